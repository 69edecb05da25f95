/*
 * The narrow boundary between the C shim and the Rust core of
 * mod_proxy_reversed: ints, file descriptors and C strings only.
 *
 * Part 1 (this header, read by bindgen): what the C shim offers to Rust.
 * Part 2 (rust_api.h): what the Rust core exports to the C shim.
 */
#ifndef PRX_SHIM_H
#define PRX_SHIM_H

#include <stddef.h>

/* Log levels, the values of httpd's APLOG_* (checked by a static assert in the shim). */
enum prx_log_level {
    PRX_LOG_ERR = 3,
    PRX_LOG_WARNING = 4,
    PRX_LOG_NOTICE = 5,
    PRX_LOG_INFO = 6,
    PRX_LOG_DEBUG = 7
};

/* Writes one line to httpd's error log, under this module's LogLevel, naming
 * the Rust source file and line that logged it. Thread-safe. */
void prx_log(int level, const char *file, int line, const char *msg);

/* Non-zero when a message at `level` would be written (LogLevel proxy_reversed:...). */
int prx_log_enabled(int level);

/* Called by the accept thread when node `node` has a fresh idle connection in
 * this child: clears the "in error" state mod_proxy may have set on the node's
 * balancer members when no connection was available. */
void prx_node_ready(int node);

#endif
