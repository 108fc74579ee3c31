// libfuse3's low-level API at version 3.12: with it fuse_session_loop_mt and the
// fuse_loop_cfg_* functions are real functions Swift can call (see TOOLCHAIN.md).
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
// fallocate's mode bits, which the one-file filesystem of the attach method handles.
#include <linux/falloc.h>
