package kernels

// ReleaseScratch drops the shared pool's packed-A buffer, which a prefill's GEMM grows to its
// rows × depth (6 MiB for a batch-8, 64-token prefill of GPT-2 124M) and which the decode steps
// after it never use: kept, it would stay resident for as long as the process runs. The next
// many-row product allocates it again.
func ReleaseScratch() {
	p := acquire()
	defer p.release()
	p.apack = nil
}
