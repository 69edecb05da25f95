/*
 * mod_proxy_reversed beside mod_cluster (mod_manager + mod_proxy_cluster):
 * hooks that let reversed nodes registered through mod_manager work.
 * Everything here is inert when mod_manager/mod_proxy_cluster are not loaded.
 *
 * - MCMP: an input filter copies (never consumes) the body of the CONFIG and
 *   APP commands that mod_manager reads; once mod_manager has answered 200,
 *   the whole body goes to prx_cluster_observe, which registers a
 *   Reversed node here too (listeners open; its Type://Host:Port worker,
 *   which mod_proxy_cluster creates, is then served over reversed connections).
 * - Health: mod_proxy_cluster's "proxy_cluster"/"balancer"/"0" provider (that
 *   mod_manager's STATUS and PING call) is wrapped: a reversed node is up iff
 *   it has authenticated reversed connections in some child; its address
 *   (httpd's own listener) is never dialled. Other nodes go to the original.
 * - A per-child watchdog callback keeps a live reversed connection at the head
 *   of each reversed worker's connection pool (mod_proxy_cluster's idle-node
 *   CPING then runs over it instead of dialling our listener) and closes
 *   pooled connections whose backend went away (so that the connection count
 *   STATUS reads does not include them).
 * Nothing here uses the general-purpose pointer of proxy_worker: it is mod_proxy_cluster's.
 */
#ifndef PRX_CLUSTER_H
#define PRX_CLUSTER_H

#include "apr_pools.h"
#include "httpd.h"
#include "mod_proxy.h"

/* Called from the module's register_hooks. */
void prx_cluster_register_hooks(apr_pool_t *p);

/* From mod_proxy_reversed.c: wraps a backend-initiated fd of `node` into
 * conn->sock with the worker's socket options, as ap_proxy_connect_backend
 * would leave a dialled socket; counts it retired when mod_proxy closes it.
 * On failure the fd is closed and counted retired. */
apr_status_t prx_attach(proxy_conn_rec *conn, proxy_worker *worker, proxy_server_conf *conf,
                        server_rec *s, int node, int fd);

#endif
