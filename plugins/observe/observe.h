/*
 * observe.h -- what the files of the observability family share
 * (plugins/observe: trace, emit-metric, log-to-eventhub and its alias
 * log-to).  Names follow the other families: a policy's file offers its
 * attributes, compile() and run() named after the policy.
 */
#ifndef PORTICO_PLUGINS_OBSERVE_H
#define PORTICO_PLUGINS_OBSERVE_H

#include "ptlib.h"

#endif
