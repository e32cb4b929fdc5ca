/*
 * KafkaSocks: everything in one include.
 */
#ifndef KSOCK_KSOCK_H
#define KSOCK_KSOCK_H

#include <ksock/common.h>
#include <ksock/error.h>
#include <ksock/runtime.h>
#include <ksock/log.h>
#include <ksock/config.h>
#include <ksock/plugin.h>
#include <ksock/value.h>
#include <ksock/serializer.h>
#include <ksock/serde.h>
#include <ksock/codec.h>
#include <ksock/reconnect.h>
#include <ksock/auth.h>
#include <ksock/transport.h>
#include <ksock/logsink.h>
#include <ksock/ws.h>
#include <ksock/kafka.h>
#include <ksock/bridge.h>

#endif
