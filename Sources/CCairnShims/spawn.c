// posix_spawn_file_actions_addclosefrom_np is a GNU extension (glibc 2.34) that Swift's
// Glibc module does not show.
#define _GNU_SOURCE
#include <spawn.h>
#include "cairn_shims.h"

int cairn_spawn_addclosefrom(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}
