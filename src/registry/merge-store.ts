/** Named merges persist in `<PATCHBAY_DATA_DIR>/merges.json` (atomic writes: json-store.ts). Only recipes are stored; factors are rebuilt lazily. */
import { JsonListStore } from './json-store.ts';
import type { MergeRecipe } from './merge-recipe.ts';

export class MergeStore extends JsonListStore<MergeRecipe> {
  constructor(dir: string) {
    super(dir, 'merges.json', 'merges');
  }

  override async load(): Promise<MergeRecipe[]> {
    return (await super.load()) as MergeRecipe[];
  }
}
