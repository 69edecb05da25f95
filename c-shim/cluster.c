/*
 * mod_proxy_reversed beside mod_cluster: see cluster.h.
 */
#include "httpd.h"
#include "http_config.h"

#include "cluster.h"
#include "rust_api.h"

void prx_cluster_register_hooks(apr_pool_t *p)
{
    (void)p;
}
