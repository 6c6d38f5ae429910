// Where a Worker makes the private directory of a file rendezvous. It makes
// one only for a bring-up whose chip_bootstrap_configs leave rootinfo_path
// empty while CHIPMESH_RENDEZVOUS_DIR is set; by default that bring-up and
// every domain meet in the Worker's shared memory (memory_store.h). The
// base: CHIPMESH_RENDEZVOUS_DIR when set, else /dev/shm when
// it is a tmpfs this user can write (a rendezvous there costs no
// filesystem journal: on an ext4 /tmp the directory, the rootinfo file, its
// rename and the removal were about half of an allocate_domain on 2 chips),
// else $TMPDIR or /tmp. The directories live only as long as their
// rendezvous.
#pragma once

#include <string>

namespace chipmesh::worker {

std::string private_dir_base();

// mkdtemp of <private_dir_base()>/<prefix>-<pid>-XXXXXX (mode 0700);
// DeviceError "<what>: cannot create ..." naming the path and the errno text.
std::string make_private_dir(const std::string& prefix, const std::string& what);

// Removes it and everything in it; never throws.
void remove_private_dir(const std::string& dir) noexcept;

}  // namespace chipmesh::worker
