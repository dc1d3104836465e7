//go:build !purego

package kernels

import "golang.org/x/sys/cpu"

// haveAVX2 reports whether the AVX2+FMA kernels of simd_amd64.s can run; haveF16C whether the
// float16 ones can too (they convert with VCVTPH2PS); haveAVX512 whether the ZMM GEMM kernel can.
var (
	haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	haveF16C = haveAVX2 && cpu.X86.HasF16C
	// haveAVX512 gates gemm6x64AVX512 (AVX-512F ZMM FMAs; the OS must save the ZMM state,
	// which x/sys/cpu checks).
	haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F
	// haveVNNI gates the quantized-activation int8 decode kernels gemvPanelQ8x*VNNI
	// (VPDPBUSD from AVX512_VNNI, VPERMB from AVX512_VBMI, byte masks from AVX512BW).
	haveVNNI = haveAVX512 && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VBMI
)
