// A minimal platform whose communicator cannot be destroyed: lets tests check
// that shutdown_bootstrap clears its handle even when the destroy fails.
#include <cstring>

#include "chipmesh/platform_abi.h"

namespace {

alignas(64) unsigned char g_window[4096];
CommContext g_ctx;
int g_destroy_calls = 0;
const char* g_error = "";

int ok0() { return CHIPMESH_SUCCESS; }
int set_device(int) { return CHIPMESH_SUCCESS; }
int malloc_(size_t, uint64_t* out) { *out = reinterpret_cast<uint64_t>(g_window); return CHIPMESH_SUCCESS; }
int free_(uint64_t) { return CHIPMESH_SUCCESS; }
int copy_to(uint64_t dst, const void* src, size_t n) { std::memcpy(reinterpret_cast<void*>(dst), src, n); return 0; }
int copy_from(void* dst, uint64_t src, size_t n) { std::memcpy(dst, reinterpret_cast<void*>(src), n); return 0; }
int launch(chipmesh_kernel_fn fn, void* args, void*) { return fn(args); }
CommHandle init(int, int, void*, const char*) { return reinterpret_cast<CommHandle>(&g_ctx); }
int alloc(CommHandle, size_t, uint64_t* ctx) { *ctx = reinterpret_cast<uint64_t>(&g_ctx); return 0; }
int base(CommHandle, uint64_t* b) { *b = reinterpret_cast<uint64_t>(g_window); return 0; }
int size(CommHandle, size_t* s) { *s = sizeof(g_window); return 0; }
int barrier(CommHandle) { return 0; }
int destroy(CommHandle) {
  ++g_destroy_calls;
  g_error = "comm_destroy failed on purpose";
  return CHIPMESH_ERR_COMM;
}
const char* last_error() { return g_error; }
int last_error_code() { return CHIPMESH_ERR_COMM; }
void emergency_cleanup() {}

const chipmesh_platform kTable = {
    CHIPMESH_PLATFORM_ABI_VERSION, sizeof(chipmesh_platform), "faulty", set_device, ok0, ok0, malloc_, free_,
    copy_to, copy_from, launch, init, alloc, base, size, barrier, destroy, last_error, last_error_code, emergency_cleanup,
};

}  // namespace

extern "C" const chipmesh_platform* chipmesh_platform_entry(void) { return &kTable; }
extern "C" int faulty_destroy_calls(void) { return g_destroy_calls; }
