/**
 * A small ONNX graph builder over onnx-proto: nodes named after the module scope they belong to
 * (`/model/layers.0/self_attn/Softmax`, like torch's exporter), constants and weights as initializers.
 * Node names matter: the graph rewrite maps `/a/b.0/c/MatMul` to the HF module `a.b.0.c` (graph/module-path.ts).
 */
import { FLOAT, INT64, onnx, tensorValueInfo, type Dim, type NodeProto, type TensorProto, type ValueInfoProto } from '../runtime/graph/onnx.ts';

export type Attr = number | number[] | string;

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private constCount = 0;

  input(name: string, elemType: number, dims: Dim[]): string {
    this.inputs.push(tensorValueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: Dim[]): void {
    this.outputs.push(tensorValueInfo(name, elemType, dims));
  }

  /**
   * Add a node `${scope}/${opType}` (suffixed `_1`, `_2`… when the scope already has one) and return its
   * output names. `outputName` forces the first output's name (graph outputs such as `present.0.key`).
   */
  op(scope: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}, opts: { outputs?: number; outputName?: string; name?: string } = {}): string[] {
    const name = this.unique(`${scope}/${opts.name ?? opType}`);
    const n = opts.outputs ?? 1;
    const output = Array.from({ length: n }, (_, i) => (i === 0 && opts.outputName ? opts.outputName : `${name}_output_${i}`));
    this.nodes.push({ opType, name, input: inputs, output, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    return output;
  }

  /** `op` with one output. */
  op1(scope: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}, opts: { outputName?: string; name?: string } = {}): string {
    return this.op(scope, opType, inputs, attrs, opts)[0]!;
  }

  /** A float32 initializer; `data` is stored as raw little-endian bytes. */
  floatInit(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({ name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** Any pre-built initializer (e.g. packed uint8 blocks for a quantized linear layer). */
  addInitializer(t: TensorProto): string {
    this.initializers.push(t);
    return t.name!;
  }

  int64Const(values: readonly number[], dims: number[] = [values.length]): string {
    const name = `const_i64_${this.constCount++}`;
    this.initializers.push({ name, dataType: INT64, dims, int64Data: [...values] });
    return name;
  }

  floatConst(values: readonly number[], dims: number[] = [values.length]): string {
    return this.floatInit(`const_f32_${this.constCount++}`, dims, new Float32Array(values));
  }

  /** Serialize as an IR 8 model (onnx-proto's schema) with the given opsets. */
  encode(graphName: string, opsets: Array<{ domain: string; version: number }>): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'patchbay-gguf-import',
      opsetImport: opsets,
      graph: { name: graphName, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private unique(base: string): string {
    let name = base;
    for (let k = 1; this.used.has(name); k++) name = `${base}_${k}`;
    this.used.add(name);
    return name;
  }
}

type AttributeProto = NonNullable<NodeProto['attribute']>[number];

function attribute(name: string, v: Attr): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (Number.isInteger(v)) return { name, type: T.INT, i: v };
  return { name, type: T.FLOAT, f: v };
}
