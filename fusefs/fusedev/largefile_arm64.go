package fusedev

// oLargefile is O_LARGEFILE as the kernel sends it in open flags on this
// architecture (arch/arm64's fcntl.h); Go's constant is 0 on 64-bit
// machines.
const oLargefile = 0o400000
