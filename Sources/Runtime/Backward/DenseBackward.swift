// Dense backward; layouts as the forward (Kernels/Dense.swift): input x [rows, in] (rows = every
// leading axis flattened), kernel W IO [in, out], dOutput dY [rows, out], all row-major.
//   dInput  = dY · Wᵀ   [rows, in]
//   dKernel = xᵀ · dY   [in, out]
//   dBias   = column sums of dY (`biasBackward`)
// The epilogue (bias, activation) is differentiated first with `epilogueBackward`.

/// dInput = dOutput · kernelᵀ. Overwrites dInput, or adds into it when `accumulate`.
public func denseBackwardInput(dOutput: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int,
                               kernel: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                               accumulate: Bool) {
    gemmSplitRows(m: rows, n: inFeatures, k: outFeatures, a: dOutput, lda: outFeatures,
                  b: kernel, ldb: outFeatures, transB: true, c: dInput, ldc: inFeatures, accumulate: accumulate)
}

/// Floats of workspace `denseBackwardKernel` may use for `threads` workers.
public func denseBackwardKernelWorkspaceCount(inFeatures: Int, outFeatures: Int,
                                              threads: Int = RuntimeThreads.count) -> Int {
    gemmTransposedAWorkspaceCount(m: inFeatures, n: outFeatures, threads: threads)
}

/// dKernel = inputᵀ · dOutput. Overwrites dKernel, or adds into it when `accumulate`. The
/// workspace (see `denseBackwardKernelWorkspaceCount`) lets workers split long, narrow products;
/// nil runs them on one thread.
public func denseBackwardKernel(input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, rows: Int,
                                inFeatures: Int, outFeatures: Int, dKernel: UnsafeMutablePointer<Float>,
                                accumulate: Bool, workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) {
    gemmTransposedA(m: inFeatures, n: outFeatures, k: rows, a: input, lda: inFeatures, b: dOutput, ldb: outFeatures,
                    c: dKernel, ldc: outFeatures, accumulate: accumulate,
                    workspace: workspace, workspaceCount: workspaceCount)
}
