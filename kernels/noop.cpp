// chipmesh_noop: does nothing and succeeds; measures the dispatch path.
#include "chipmesh/kernel.h"

CHIPMESH_KERNEL(chipmesh_noop) {
  (void)args;
  return 0;
}
