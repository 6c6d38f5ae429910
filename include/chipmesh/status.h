/* Status codes shared by every C boundary of chipmesh (platform ABI and the
 * communicator C API). 0 is success; each failure code maps to one C++ error
 * type (see chipmesh/errors.h). */
#ifndef CHIPMESH_STATUS_H
#define CHIPMESH_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chipmesh_status {
  CHIPMESH_SUCCESS = 0,
  CHIPMESH_ERR_CONFIG = 1,   /* invalid argument or configuration */
  CHIPMESH_ERR_COMM = 2,     /* communicator failure (peer died, disagreement) */
  CHIPMESH_ERR_DEVICE = 3,   /* device/platform failure */
  CHIPMESH_ERR_TIMEOUT = 4,  /* a deadline passed */
  CHIPMESH_ERR_INTERNAL = 5  /* anything else */
} chipmesh_status;

#ifdef __cplusplus
}
#endif

#endif /* CHIPMESH_STATUS_H */
