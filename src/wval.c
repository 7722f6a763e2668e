/*-------------------------------------------------------------------------
 *
 * wval.c
 *	  Module entry point of the wval extension.
 *
 * Settings (GUCs) are registered by the files that own them; this file
 * only calls their init functions so that the list of what is set up at
 * load time is in one place.  Once they are defined the prefix "wval." is
 * reserved: a misspelt wval.* setting is an error instead of a silently
 * ignored placeholder, and placeholders set before the library was loaded
 * that name no wval setting are removed with a WARNING.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "wval.h"
#include "hub.h"
#include "risk.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Registers wval's settings and callbacks when the library is loaded. */
void
_PG_init(void)
{
	wval_store_init();
	wval_hub_init();
	wval_risk_init();
	wval_schedule_init();
	wval_uninstall_init();
	wval_evaluate_init();
	wval_notifier_init();

	MarkGUCPrefixReserved("wval");
}
