// Preloaded into drover by tests/integration/test_allocations.py: counts the process's heap
// allocations, so a test can check that a path allocates nothing per request. The count lives in a
// file mapped shared (ALLOC_COUNT_FILE, 8 bytes), which the test reads while drover runs.
// Frees are not counted: an allocation is what the hot path must not make.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* block, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);
extern void* __libc_valloc(size_t size);
extern void* __libc_pvalloc(size_t size);

static uint64_t* count;   // null until the file is mapped (and when ALLOC_COUNT_FILE is unset)

__attribute__((constructor)) static void map_count(void) {
    const char* path = getenv("ALLOC_COUNT_FILE");
    if (path == NULL) { return; }
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) { return; }
    if (ftruncate(fd, sizeof(uint64_t)) == 0) {
        void* mapped = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapped != MAP_FAILED) { count = mapped; }
    }
    close(fd);
}

static void counted(void) {
    if (count != NULL) { __atomic_fetch_add(count, 1, __ATOMIC_RELAXED); }
}

void* malloc(size_t size) {
    counted();
    return __libc_malloc(size);
}

void* calloc(size_t n, size_t size) {
    counted();
    return __libc_calloc(n, size);
}

void* realloc(void* block, size_t size) {
    counted();
    return __libc_realloc(block, size);
}

void* memalign(size_t alignment, size_t size) {
    counted();
    return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) {
    counted();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) {
    if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) { return EINVAL; }
    counted();
    void* block = __libc_memalign(alignment, size);
    if (block == NULL) { return ENOMEM; }
    *out = block;
    return 0;
}

void* valloc(size_t size) {
    counted();
    return __libc_valloc(size);
}

void* pvalloc(size_t size) {
    counted();
    return __libc_pvalloc(size);
}
