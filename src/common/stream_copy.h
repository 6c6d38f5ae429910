// Copies that bypass the caches (non-temporal stores) for bulk moves (the
// built-in collectives, Worker::copy_to / copy_from), and the rule that
// says when they pay. Compiled into chipmesh_common and into the kernels
// library, which links nothing of chipmesh.
//
// Why: a plain store first reads the destination line into the cache (a
// read for ownership) and then evicts something else to make room. Once a
// call's data no longer fits in the last-level cache, both are wasted trips
// to memory; a streaming store writes the line without them. glibc's memcpy
// switches to streaming stores only above its own threshold, which on the
// 2-vCPU AMD EPYC VMs we run on comes out at 240 MiB (it takes the L3 for
// 320 MiB there), so a 16-64 MiB copy runs at 9-14 GB/s against 23-28 GB/s
// streamed (docs/PERFORMANCE.md). Below the threshold the data may still be
// in cache when it is read next (a peer, the next call), and plain stores win
// (48 against 28 GB/s at 4 MiB here), so small calls keep memcpy.
//
// Lines a peer reads are the exception, at any size: a plain store into a
// line that another core holds (a peer read it in the call before) first
// takes it back from that core. On the AMD EPYC VM such stores ran at
// 2.3-9 GB/s, the rate moving with where the host ran the VM's two vCPUs,
// streamed ones at 26-27 GB/s. So the kernels stream what their peers read
// or may hold (twophase's stores into a peer's output out of place, the
// ring's units), and the sim platform its device-to-host copies of 1 MiB
// and more (a flush into the parent's output staging); nothing else.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chipmesh {

// Whether a call that reads and writes `footprint_bytes` in total on this
// rank should write its results with streaming stores: when they exceed the
// last-level cache (stream_threshold_bytes()).
bool stream_stores_pay(uint64_t footprint_bytes);
// The size of the last-level cache as sysfs reports it (the deepest data or
// unified cache of cpu0), clamped to [8 MiB, 64 MiB] (a 2-vCPU VM's share of
// a larger L3 is smaller); 32 MiB when sysfs says nothing. Read once per
// process.
uint64_t stream_threshold_bytes();
// The same from a sysfs cpu directory (".../cpu0"); 0 when it has no cache.
uint64_t last_level_cache_bytes(const char* cpu_dir);

// memcpy(dst, src, bytes) with streaming stores (plain ones for the
// unaligned head and the tail). Ends with a store fence: the streamed lines
// are ordered before any later store, so a release that follows (a barrier,
// a flag) publishes them as it does plain stores. Regions must not overlap.
void stream_copy(void* dst, const void* src, size_t bytes);
// The same without the fence, for a loop of small copies (a fence waits
// until every streamed line has left the core: once per 8 KiB block of a
// fold, that stalled the loads of the next block); stream_fence() after
// the loop.
void stream_copy_unfenced(void* dst, const void* src, size_t bytes);
void stream_fence();
// stream_copy when `stream`, memcpy otherwise (the caller has judged the
// whole call with stream_stores_pay).
void copy_streamed_if(bool stream, void* dst, const void* src, size_t bytes);
// One copy alone: memcpy, or stream_copy once source and destination
// together outgrow the cache (stream_stores_pay(2 * bytes)).
void copy_bulk(void* dst, const void* src, size_t bytes);
// The two bodies behind stream_copy, for the tests: 16-byte (SSE2) and
// 32-byte (AVX2, only where the CPU has it) stores; both with the fence.
void stream_copy_sse2(void* dst, const void* src, size_t bytes);
void stream_copy_avx2(void* dst, const void* src, size_t bytes);
bool cpu_has_avx2();

}  // namespace chipmesh
