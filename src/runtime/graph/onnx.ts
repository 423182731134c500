/**
 * Thin helpers over the protobufjs static ONNX schema (`onnx-proto`, ONNX 1.10 / IR 8 schema).
 *
 * Why decode/encode the whole ModelProto instead of patching bytes: the rewrite renames tensor
 * producers and inserts nodes in topological position, which needs the node list. Fields that the
 * IR 8 schema does not know (IR 10 `metadata_props` on nodes/graphs, function overloads) are dropped
 * on re-encode; they carry no semantics ORT needs.
 */
import onnxPkg from 'onnx-proto';

export const { onnx } = onnxPkg;
export type ModelProto = onnxPkg.onnx.ModelProto;
export type GraphProto = onnxPkg.onnx.IGraphProto;
export type NodeProto = onnxPkg.onnx.INodeProto;
export type TensorProto = onnxPkg.onnx.ITensorProto;
export type ValueInfoProto = onnxPkg.onnx.IValueInfoProto;

export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const INT64 = onnx.TensorProto.DataType.INT64;

/** protobufjs decodes int64 as `Long` when the `long` package is present. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map(toNumber);
}

/** A dim is a number when fixed, a string when symbolic (`dim_param`), undefined when unknown. */
export type Dim = number | string | undefined;

export function valueInfoDims(vi: ValueInfoProto): Dim[] | undefined {
  const shape = vi.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) =>
    d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? toNumber(d.dimValue) : undefined,
  );
}

export function tensorValueInfo(name: string, elemType: number, dims: readonly Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {})),
        },
      },
    },
  };
}

export function int64Initializer(name: string, values: readonly number[]): TensorProto {
  return { name, dataType: INT64, dims: [values.length], int64Data: [...values] };
}

export function node(opType: string, name: string, input: string[], output: string[], attribute: NodeProto['attribute'] = []): NodeProto {
  return { opType, name, input, output, attribute };
}

export function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? toNumber(a.i) : fallback;
}

/** The raw bytes of an initializer stored as raw_data (every weight Patchbay writes), else undefined. */
export function rawBytesOf(t: TensorProto | undefined): Uint8Array | undefined {
  return t?.rawData && t.rawData.byteLength > 0 ? t.rawData : undefined;
}

/** A float32 initializer's values, in their own aligned buffer (a Buffer's slice() would not copy); else undefined. */
export function floatsOf(t: TensorProto | undefined): Float32Array | undefined {
  if (!t || t.dataType !== FLOAT) return undefined;
  if (t.rawData && t.rawData.byteLength > 0) {
    const copy = new Uint8Array(t.rawData);
    return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  }
  return t.floatData && t.floatData.length > 0 ? Float32Array.from(t.floatData) : undefined;
}

export function floatInitializer(name: string, dims: number[], data: Float32Array): TensorProto {
  return { name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Drops nodes whose outputs nothing reads (repeatedly, so chains go too), then initializers nothing reads. */
export function pruneUnread(model: ModelProto): void {
  const graph = model.graph!;
  const outputs = new Set((graph.output ?? []).map((o) => o.name!));
  for (;;) {
    const read = new Set((graph.node ?? []).flatMap((n) => n.input ?? []));
    const keep = (graph.node ?? []).filter((n) => (n.output ?? []).some((o) => o !== '' && (read.has(o) || outputs.has(o))));
    if (keep.length === graph.node!.length) break;
    graph.node = keep;
  }
  const read = new Set((graph.node ?? []).flatMap((n) => n.input ?? []));
  graph.initializer = (graph.initializer ?? []).filter((t) => read.has(t.name!));
}
