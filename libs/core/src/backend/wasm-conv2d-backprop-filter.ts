import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';

/**
 * tfjs-backend-wasm 4.22 ships no `Conv2DBackpropFilter` kernel, so training any conv
 * model on wasm fails. This builds it from the backend's own kernels:
 *
 *   dW[fh,fw,ci,co] = sum_{b,oh,ow} x[b, oh*s+fh-top, ow*s+fw-left, ci] * dy[b,oh,ow,co]
 *
 * which is a convolution of x (channels as batch, batch as channels) with dy used as the
 * filter, dilated by the forward stride: transpose x to [ci,H,W,b] and dy to [oh,ow,b,co],
 * convolve with explicit padding (forward top/left, bottom/right chosen so the output is
 * exactly fh x fw; input rows/cols the forward pass never read are sliced off), then
 * transpose [ci,fh,fw,co] back to [fh,fw,ci,co]. Checked against the cpu backend in the
 * spec beside this file.
 */
export function registerWasmConv2DBackpropFilter(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
  });
}

interface WasmBackendLike {
  disposeData(dataId: object): boolean;
}

function run(
  name: string,
  inputs: Record<string, TensorInfo>,
  backend: WasmBackendLike,
  attrs: NamedAttrMap,
): TensorInfo {
  const kernel = tf.getKernel(name, 'wasm');
  if (!kernel) throw new Error(`wasm backend has no ${name} kernel`);
  return kernel.kernelFunc({ inputs, backend: backend as never, attrs }) as TensorInfo;
}

function conv2DBackpropFilter(args: {
  inputs: { x: TensorInfo; dy: TensorInfo };
  backend: WasmBackendLike;
  attrs: NamedAttrMap;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: number | [number, number];
    pad: 'valid' | 'same' | number;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  if (dataFormat === 'NCHW') throw new Error("wasm Conv2DBackpropFilter supports dataFormat 'NHWC' only");
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const [, H, W] = x.shape as [number, number, number, number];
  const { filterHeight: fh, filterWidth: fw, strideHeight: sH, strideWidth: sW, outHeight: oh, outWidth: ow } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  let bottom = fh + (oh - 1) * sH - H - top;
  let right = fw + (ow - 1) * sW - W - left;
  const temps: TensorInfo[] = [];
  let input = x;
  if (bottom < 0 || right < 0) {
    const keepH = H + Math.min(0, bottom);
    const keepW = W + Math.min(0, right);
    input = run('Slice', { x }, backend, { begin: [0, 0, 0, 0], size: [x.shape[0]!, keepH, keepW, x.shape[3]!] });
    temps.push(input);
    bottom = Math.max(0, bottom);
    right = Math.max(0, right);
  }
  const xT = run('Transpose', { x: input }, backend, { perm: [3, 1, 2, 0] });
  const dyT = run('Transpose', { x: dy }, backend, { perm: [1, 2, 0, 3] });
  temps.push(xT, dyT);
  const conv = run('Conv2D', { x: xT, filter: dyT }, backend, {
    strides: [1, 1],
    pad: [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ] as unknown as number,
    dataFormat: 'NHWC',
    dilations: [sH, sW],
    dimRoundingMode: undefined as unknown as string,
  });
  temps.push(conv);
  const out = run('Transpose', { x: conv }, backend, { perm: [1, 2, 0, 3] });
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
}
