/*-------------------------------------------------------------------------
 *
 * access.h
 *	  World access checks with a per-backend cache (access.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_ACCESS_H
#define WVAL_ACCESS_H

/* May role read (write = false) or write the world?  NULL world: every world. */
extern bool wval_access_allowed(Oid role, const char *world_id, bool write);

#endif							/* WVAL_ACCESS_H */
