/*-------------------------------------------------------------------------
 *
 * wval.c
 *	  Module entry point of the wval extension.
 *
 * Settings (GUCs) are registered by the files that own them; this file
 * only calls their init functions so that the list of what is set up at
 * load time is in one place.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "wval.h"
#include "hub.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Registers wval's settings and callbacks when the library is loaded. */
void
_PG_init(void)
{
	wval_store_init();
	wval_hub_init();
	wval_schedule_init();
	wval_uninstall_init();
	wval_evaluate_init();
}
