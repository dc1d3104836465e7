package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

func f16ToF32(h uint16) float32 { return safetensors.F16ToF32(h) }

// EncodeF32 returns src as little-endian float32 bytes.
func EncodeF32(src []float32) []byte {
	out := make([]byte, 4*len(src))
	for i, v := range src {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

// EncodeF16 returns src rounded to binary16 (nearest, ties to even), little-endian.
func EncodeF16(src []float32) []byte {
	out := make([]byte, 2*len(src))
	for i, v := range src {
		binary.LittleEndian.PutUint16(out[2*i:], safetensors.F32ToF16(v))
	}
	return out
}

// QuantizeQ8_0 encodes src (a multiple of QK8_0 values) as Q8_0 blocks, as ggml's
// quantize_row_q8_0_ref does: per block of 32, d = max|x|/127 stored as fp16, q = round(x/d)
// computed as x·(1/d) in float32 and rounded half away from zero.
func QuantizeQ8_0(src []float32) ([]byte, error) {
	if len(src)%QK8_0 != 0 {
		return nil, fmt.Errorf("gguf: Q8_0 needs a multiple of %d values, got %d", QK8_0, len(src))
	}
	out := make([]byte, len(src)/QK8_0*q8BlockBytes)
	for b := 0; b < len(src)/QK8_0; b++ {
		x := src[b*QK8_0 : (b+1)*QK8_0]
		blk := out[b*q8BlockBytes : (b+1)*q8BlockBytes]
		var amax float32
		for _, v := range x {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, safetensors.F32ToF16(d))
		for j, v := range x {
			blk[2+j] = byte(int8(math.Round(float64(v * id))))
		}
	}
	return out, nil
}

// DequantizeQ8_0 decodes Q8_0 blocks into dst (len(dst)/QK8_0 blocks are read): x = d·q with d the
// block's fp16 scale widened to float32.
func DequantizeQ8_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/QK8_0; b++ {
		blk := src[b*q8BlockBytes : (b+1)*q8BlockBytes]
		d := f16ToF32(binary.LittleEndian.Uint16(blk))
		for j := 0; j < QK8_0; j++ {
			dst[b*QK8_0+j] = d * float32(int8(blk[2+j]))
		}
	}
}
