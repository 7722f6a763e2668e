/*-------------------------------------------------------------------------
 *
 * bus.h
 *	  The bus's one emitter (bus.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_BUS_H
#define WVAL_BUS_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* An event of the bus, as wval_emit_event writes it. */
typedef struct WvalEvent
{
	const char *type;
	const char *world_id;		/* NULL: an event of no world */
	const char *subject;
	const char *idempotency_key;
	Jsonb	   *data;			/* NULL: {} */
	Interval   *ttl;			/* NULL: the event never expires */
} WvalEvent;

extern int64 wval_emit_event(const WvalEvent *event);

#endif							/* WVAL_BUS_H */
