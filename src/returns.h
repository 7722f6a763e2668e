/*-------------------------------------------------------------------------
 *
 * returns.h
 *	  The stored return series of runs (returns.c, docs/reports.md,
 *	  "Reproducible runs").
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_RETURNS_H
#define WVAL_RETURNS_H

#include "postgres.h"

/*
 * Stores r[0..n-1] in wval.run_returns under (world, rhash) when the world's
 * settings say store_returns = true and the series is not stored yet (the
 * same series is stored once per world).  The caller is connected to SPI and
 * stores the run that carries rhash in the same transaction.  Returns true
 * when a row was written.
 */
extern bool wval_store_run_returns(const char *world, const char *rhash,
								   const double *r, int n);

#endif							/* WVAL_RETURNS_H */
