//go:build !arm64

package fusedev

// oLargefile is O_LARGEFILE as the kernel sends it in open flags
// (asm-generic's fcntl.h, x86's); Go's constant is 0 on 64-bit machines.
const oLargefile = 0o100000
