# wval: world validation inside PostgreSQL (PGXS build)
#
#   make && make install          build and install into the server of pg_config
#   make test                     everything the README's test command runs
#   make installcheck             pg_regress against a running server (PGXS)
#   make check-ubsan              the suite and a fuzz pass with wval built with UBSan
#   make check-valgrind           pg_regress and a fuzz pass under valgrind memcheck
#
# The install script wval--$(EXTVERSION).sql is generated from the ordered SQL
# sources below; each one sits next to the C file of the same concept.

EXTENSION  = wval
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = wval
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# Order matters: later files use objects of earlier ones.
SQL_SOURCES = \
	src/wval.sql \
	src/store.sql \
	src/security.sql \
	src/schedule.sql \
	src/bus.sql \
	src/metrics.sql \
	src/hub.sql \
	src/policy.sql \
	src/evaluate.sql \
	src/portfolio.sql \
	src/report.sql \
	src/select.sql \
	src/live.sql \
	src/diff.sql \
	src/scenarios.sql \
	src/retention.sql \
	src/observability.sql \
	src/uninstall.sql \
	src/finish.sql

# the published scenario sets, loaded by the install script
SCENARIO_SETS = good borderline bad known_bad

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*--*.sql))
DOCS       = README.md

# Upgrades (docs/development.md, "Upgrades"): wval--A--B.sql is generated from
# the hand-written schema part updates/A--B.sql and the routines of the new
# install script; the install script of every release stays in updates/.
UPGRADES   = 0.1.0--0.2.0
DATA_built += $(patsubst %,$(EXTENSION)--%.sql,$(UPGRADES))
DATA       += $(wildcard updates/$(EXTENSION)--*.sql)

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=pgcrypto

# -isystem keeps warnings of the server headers out of our -Wextra build.
PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS   = -Wall -Wextra
# JIT bitcode is of no use for wval and needs clang; skip it.
override with_llvm := no

EXTRA_CLEAN = $(DATA_built)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(EXTENSION).control $(wildcard data/scenarios/*.json)
	( echo '-- generated from $(SQL_SOURCES); edit those files, not this one'; \
	  for f in $(SQL_SOURCES); do \
	    echo; echo "-- source: $$f"; cat $$f; \
	    if [ $$f = src/scenarios.sql ]; then \
	      echo; echo "-- source: data/scenarios/*.json"; \
	      printf "INSERT INTO wval.sample_policies VALUES ('sample', \$$json\$$"; \
	      cat data/scenarios/sample_policy.json; printf "\$$json\$$);\n"; \
	      for s in $(SCENARIO_SETS); do \
	        printf "SELECT wval._load_scenario_set('%s', \$$json\$$" $$s; cat data/scenarios/$$s.json; \
	        printf "\$$json\$$, (SELECT expected FROM wval._scenario_expectations WHERE set_name = '%s'));\n" $$s; \
	      done; \
	    fi; \
	  done ) > $@

$(EXTENSION)--%.sql: updates/%.sql $(EXTENSION)--$(EXTVERSION).sql scripts/upgrade-script.py scripts/sqlsplit.py src/finish.sql
	python3 scripts/upgrade-script.py updates/$(EXTENSION)--$(firstword $(subst --, ,$*)).sql $(EXTENSION)--$(EXTVERSION).sql $< > $@.tmp
	mv $@.tmp $@

$(OBJS): src/wval.h
src/metrics.o src/metrics_agg.o src/evaluate.o src/portfolio.o: src/metrics.h
src/hub.o src/wval.o src/portfolio.o: src/hub.h
src/diff.o src/rules.o src/policy.o src/evaluate.o: src/policy.h src/evaluate.h

.PHONY: test demo check-ubsan check-valgrind
test:
	./scripts/test.sh

# sanitizer runs (docs/development.md, Hardening tests); not part of make test
check-ubsan:
	./scripts/sanitize.sh ubsan

check-valgrind:
	./scripts/sanitize.sh valgrind

demo:
	./scripts/demo.sh
