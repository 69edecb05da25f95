/*
 * mod_proxy_reversed beside mod_cluster (mod_manager + mod_proxy_cluster):
 * hooks that let reversed nodes registered through mod_manager work.
 * Everything here is inert when mod_manager/mod_proxy_cluster are not loaded.
 */
#ifndef PRX_CLUSTER_H
#define PRX_CLUSTER_H

#include "apr_pools.h"

/* Called from the module's register_hooks. */
void prx_cluster_register_hooks(apr_pool_t *p);

#endif
