// The opening of a call without a barrier, shared by onephase allreduce and
// the small path of the other collectives: every rank has published its
// descriptor of the call (device::flag_publish); this waits for every
// peer's and checks it.
#pragma once

#include <cstdint>

#include "chipmesh/kernel.h"  // and kernel_device.h

namespace chipmesh::kernels {

// Waits until every peer r's entered_of(r) reaches `call_no` (cpu_of(r):
// where r published from, plus one; `here`: this rank's) and checks each
// with agree(r, message), which returns false and writes `message` when r
// made another call. Every rank sees every descriptor, so all find a
// disagreement or none does. Peers asleep on this rank's flag `own` are
// woken once its own waits are over, whichever way they ended, and before
// the barriers of a disagreement: on one, two barriers (those a rank that
// opened with a barrier passes: its opening one and one more) and
// CHIPMESH_ERR_CONFIG with the message. Otherwise 0 or the failed wait's
// status.
template <typename EnteredOf, typename CpuOf, typename Agree>
int await_agreeing_peers(const chipmesh_kernel_args* args, uint32_t call_no, int32_t here, device::Flag* own,
                         EnteredOf&& entered_of, CpuOf&& cpu_of, Agree&& agree) {
  char message[CHIPMESH_KERNEL_ERROR_SIZE];  // written by agree() when it returns false, read only then
  bool disagreed = false;
  const int rc = device::wait_for_peers(args, call_no, here, entered_of, cpu_of, [&](uint32_t r) {
    disagreed = !agree(r, message);
    return disagreed ? CHIPMESH_ERR_CONFIG : 0;
  });
  device::flag_wake_sleepers(own);
  if (!disagreed) return rc;
  for (int b = 0; b < 2; ++b)
    if (int brc = device::barrier(args)) return brc;
  return device::fail(args, CHIPMESH_ERR_CONFIG, "%s", message);
}

}  // namespace chipmesh::kernels
