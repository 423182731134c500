export { findLinearLayers, type LinearLayer } from './linear-layers.ts';
export { modulePath } from './module-path.ts';
export { layerSelector, DEFAULT_DELTA_SELECTION, type DeltaSelection, type LayerPredicate } from './selection.ts';
export { addDeltaBranches, deltaInputNames, type DeltaLayer, type DeltaRewrite } from './delta-branches.ts';
export { sliceLogits, LOGITS_START_INPUT } from './logits-slice.ts';
export { buildDeltaFeeds, type FeedTensor } from './delta-feeds.ts';
export { setNBitsAccuracy, withNBitsAccuracy, type NBitsAccuracy } from './nbits-accuracy.ts';
