/**
 * What an adapter is validated against: the base graph's linear layers and which of them carry a
 * delta branch. Built once at model load from the graph rewrite.
 */
import { badRequest, PatchbayError } from '../errors.ts';
import type { DeltaLayer } from '../runtime/graph/delta-branches.ts';
import type { LinearLayer } from '../runtime/graph/linear-layers.ts';

export interface AttachLayer {
  name: string;
  dIn: number;
  dOut: number;
}

export interface AttachTarget {
  /** Layers with a delta branch: the only ones that accept factors. */
  layers: ReadonlyMap<string, AttachLayer>;
  /** Every linear layer of the base graph (superset), so errors can tell "no branch" from "no such layer". */
  graphLayers: ReadonlyMap<string, AttachLayer>;
  /** How the branches were chosen (e.g. `attention`), for messages. */
  selection: string;
  /**
   * Names the base answers to (served model id, checkpoint directory or hub id). When given, an adapter
   * whose `base_model_name_or_path` names none of them (compared by last path segment, case-insensitive,
   * without a trailing `-hf`) is rejected. Leave unset to rely on module names and shapes alone.
   */
  baseModelNames?: readonly string[];
}

export function attachTarget(
  rewrite: { layers: readonly DeltaLayer[]; linearLayers: readonly LinearLayer[] },
  selection: string,
  baseModelNames?: readonly string[],
): AttachTarget {
  const pick = (l: AttachLayer): [string, AttachLayer] => [l.name, { name: l.name, dIn: l.dIn, dOut: l.dOut }];
  return {
    layers: new Map(rewrite.layers.map(pick)),
    graphLayers: new Map(rewrite.linearLayers.map(pick)),
    selection,
    ...(baseModelNames ? { baseModelNames } : {}),
  };
}

export function invalidAdapter(id: string, message: string, code = 'invalid_adapter'): PatchbayError {
  return badRequest(`adapter ${id}: ${message}`, 'adapter', code);
}

/** Resolve every module to its attachable layer, or throw one 400 listing what does not fit. */
export function resolveModules(id: string, modules: readonly string[], target: AttachTarget): Map<string, AttachLayer> {
  const known = modules.filter((m) => target.graphLayers.has(m));
  if (modules.length > 0 && known.length === 0) {
    const sample = [...target.graphLayers.keys()].slice(0, 2).join(', ');
    throw invalidAdapter(
      id,
      `does not fit this base model: none of its ${modules.length} modules (e.g. ${modules[0]}) is a linear layer of the base, whose layers look like ${sample}`,
      'adapter_base_mismatch',
    );
  }
  const problems: string[] = [];
  const out = new Map<string, AttachLayer>();
  for (const m of modules) {
    const layer = target.layers.get(m);
    if (layer) out.set(m, layer);
    else if (target.graphLayers.has(m)) problems.push(`module ${m} is not attachable: the base graph has no delta branch for it (branches: ${target.selection})`);
    else problems.push(`module ${m} is not attachable: the base model has no linear layer of that name`);
  }
  if (problems.length > 0) throw invalidAdapter(id, problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : ''), 'adapter_not_attachable');
  return out;
}

/** Reject an adapter trained on another base, when both sides name theirs. */
export function checkBaseModel(id: string, adapterBase: string | null | undefined, target: AttachTarget): void {
  if (!adapterBase || !target.baseModelNames || target.baseModelNames.length === 0) return;
  const norm = (s: string) => (s.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? s).toLowerCase().replace(/-hf$/, '');
  const ours = new Set(target.baseModelNames.map(norm));
  if (!ours.has(norm(adapterBase))) {
    throw invalidAdapter(id, `was trained on base model ${adapterBase}, but this server serves ${target.baseModelNames.join(' / ')}`, 'adapter_base_mismatch');
  }
}
