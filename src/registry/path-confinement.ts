/**
 * Adapter paths must really lie inside the directories the operator allowed: real paths are compared (so
 * `..` and symlinked directories are resolved), and every entry of the adapter directory is resolved too,
 * so a file that symlinks out (e.g. `adapter_model.safetensors -> /etc/shadow`) is refused before it is read.
 */
import { readdir, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { badRequest } from '../errors.ts';

/** Real paths of the roots that exist (a missing root confines to nothing). */
export async function realRoots(roots: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of roots) {
    const real = await realpath(r).catch(() => undefined);
    if (real) out.push(real);
  }
  return out;
}

const inside = (path: string, root: string) => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

export interface Confinement {
  /** Directories an adapter directory and its files must lie in (compared by their real paths). */
  roots: readonly string[];
  /** How the roots are configured, for the refusal message (e.g. `PATCHBAY_ADAPTER_ROOTS`). */
  setting: string;
  /** Whether refusals may show server paths (admin answers) or not (public request errors). */
  showPaths: boolean;
}

/**
 * The adapter directory's real path when it and every entry in it resolve inside one of the roots; a 400
 * `adapter_path_not_allowed` saying why otherwise, or `adapter_path_not_found` when there is no directory.
 * `shown` is what the message calls the path (admins see paths; request errors are rewritten by the caller).
 */
export async function confineAdapterDir(path: string, c: Confinement, param: string, shown = path): Promise<string> {
  // All three at once: this runs on every cold load, and each awaited fs call is a thread-pool round trip.
  // readdir(path) lists what realpath(path) names (a swap of links in between is no more than adding an
  // escaping link right after this check, which the check cannot prevent either). readdir of a
  // non-directory fails (ENOTDIR): that is the directory check.
  const [real, roots, entries] = await Promise.all([
    realpath(path).catch(() => undefined),
    realRoots(c.roots),
    readdir(path, { withFileTypes: true }).catch(() => undefined),
  ]);
  const notDir = () => badRequest(`adapter path ${shown} is not a directory on the server`, param, 'adapter_path_not_found');
  if (!real) throw notDir();
  const root = roots.find((r) => inside(real, r));
  if (!root) {
    const via = real === path || !c.showPaths ? '' : ` (it resolves to ${real})`;
    const allowed = c.showPaths ? `; allowed: ${c.roots.join(', ') || '(none exist)'}` : '';
    throw badRequest(`adapter path ${shown} is outside the directories adapters may be loaded from${via}${allowed} (${c.setting})`, param, 'adapter_path_not_allowed');
  }
  if (!entries) throw notDir();
  // Only symbolic links can lead out: a plain entry of a directory inside the root is inside it too.
  const links = entries.filter((e) => e.isSymbolicLink()).map((e) => e.name);
  const targets = await Promise.all(links.map((name) => realpath(join(real, name)).catch(() => undefined)));
  links.forEach((entry, i) => {
    const target = targets[i];
    // A dangling link reads as missing later (a 400 naming the file); one pointing outside is refused now.
    if (target && !inside(target, root)) {
      const where = c.showPaths ? root : 'the allowed directory';
      throw badRequest(`adapter path ${shown}: ${entry} links outside ${where} (${c.setting}); refusing to read it`, param, 'adapter_path_not_allowed');
    }
  });
  return real;
}
