/*-------------------------------------------------------------------------
 *
 * evaluate.h
 *	  Helpers of the evaluation entry points shared with other concepts
 *	  (live monitoring, portfolio and cohort runs, policy diff).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_EVALUATE_H
#define WVAL_EVALUATE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "policy.h"

extern Jsonb *wval_merge_metrics(Jsonb *computed, Jsonb *supplied);
extern Jsonb *wval_add_validation_health(Jsonb *metrics, const WvalOutcome *out);
extern Jsonb *wval_outcome_jsonb(const WvalPolicy *policy, const WvalOutcome *out, Jsonb *metrics);
extern void wval_check_stage(const char *stage);
extern bool wval_context_timestamp(Jsonb *context, const char *key, TimestampTz *out);

#endif							/* WVAL_EVALUATE_H */
