# wval: world validation inside PostgreSQL (PGXS build)
#
#   make && make install          build and install into the server of pg_config
#   make test                     everything the README's test command runs
#   make installcheck             pg_regress (sql/) and the isolation specs
#                                 (test/isolation/) against a running server
#                                 where wval is installed (PGXS)
#   make tempcheck                the same in a throw-away instance with pg_cron
#                                 preloaded (pg_cron style --temp-instance; not
#                                 as root)
#   make check-ubsan              the suite and a fuzz pass with wval built with UBSan
#   make check-valgrind           pg_regress and a fuzz pass under valgrind memcheck
#
# The install script wval--$(EXTVERSION).sql is generated from the SQL sources
# below (each one sits next to the C file of the same concept), in the order
# their headers ask for.

EXTENSION  = wval
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = wval
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# Every src/*.sql states in its header what it needs ("-- requires: store bus");
# scripts/install-script.py orders the files by those lines and appends the
# data a header names ("-- then:", the scenario sets of data/scenarios/).  A new
# file needs only its header line.
SQL_SOURCES = $(sort $(wildcard src/*.sql))
INSTALL_SCRIPT_INPUTS = scripts/install-script.py scripts/scenario-sets.py $(wildcard data/scenarios/*.json)

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*--*.sql))

# Upgrades (docs/development.md, "Upgrades"): wval--A--B.sql is generated from
# the hand-written schema part updates/A--B.sql and the routines of the new
# install script; the install script of every release stays in updates/.
UPGRADES   = 0.1.0--0.2.0
DATA_built += $(patsubst %,$(EXTENSION)--%.sql,$(UPGRADES))
DATA       += $(wildcard updates/$(EXTENSION)--*.sql)

# Documentation, installed under wval's own names into $(docdir)/extension:
# README.md as wval.md and docs/<page>.md as wval-<page>.md (links rewritten).
DOC_PAGES = $(sort $(wildcard docs/*.md))
DOCS      = .build/doc/$(EXTENSION).md $(patsubst docs/%.md,.build/doc/$(EXTENSION)-%.md,$(DOC_PAGES))

# Tests, the pgvector way: pg_regress creates contrib_regression and loads the
# extensions itself (pgcrypto only computes expected HMACs in sql/hub.sql).
# Interleavings of concurrent sessions are isolation specs (pgmq style).
REGRESS        = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS   = --inputdir=$(srcdir) --load-extension=pgcrypto --load-extension=$(EXTENSION)
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation --load-extension=$(EXTENSION)

# Header dependencies are tracked by the compiler (.deps/*.Po), so editing a
# header rebuilds exactly the objects that include it.
override autodepend := yes

# -isystem keeps warnings of the server headers out of our -Wextra build.
PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS   = -Wall -Wextra
# JIT bitcode is of no use for wval and needs clang; skip it.
override with_llvm := no

EXTRA_CLEAN = $(DATA_built) $(addsuffix .tmp,$(DATA_built)) .build/doc

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# src/util.c hashes with OpenSSL's SHA256_* when the server is built with OpenSSL
ifeq ($(with_ssl),openssl)
SHLIB_LINK += -lcrypto
endif

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(EXTENSION).control $(INSTALL_SCRIPT_INPUTS)
	python3 scripts/install-script.py $(SQL_SOURCES) > $@.tmp
	mv $@.tmp $@

$(EXTENSION)--%.sql: updates/%.sql $(EXTENSION)--$(EXTVERSION).sql scripts/upgrade-script.py scripts/sqlsplit.py src/finish.sql
	python3 scripts/upgrade-script.py updates/$(EXTENSION)--$(firstword $(subst --, ,$*)).sql $(EXTENSION)--$(EXTVERSION).sql $< > $@.tmp
	mv $@.tmp $@

all: $(DOCS)

.build/doc/$(EXTENSION).md: README.md
	@mkdir -p $(dir $@)
	sed -e 's|](docs/\([a-z_-]*\)\.md|]($(EXTENSION)-\1.md|g' $< > $@

.build/doc/$(EXTENSION)-%.md: docs/%.md
	@mkdir -p $(dir $@)
	sed -e 's|](\([a-z_-]*\)\.md|]($(EXTENSION)-\1.md|g' $< > $@

# make tempcheck: installcheck in a throw-away instance (tmp_check/) that
# preloads pg_cron, like pg_cron's own Makefile (--temp-config/--temp-instance).
# Uses the binaries of $(bindir) and the wval installed there (make install).
TEMPCHECK_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/temp.conf

.PHONY: test demo tempcheck check-ubsan check-valgrind
test:
	./scripts/test.sh

tempcheck:
	$(MAKE) installcheck EXTRA_REGRESS_OPTS='$(TEMPCHECK_OPTS) $(EXTRA_REGRESS_OPTS)'

# sanitizer runs (docs/development.md, Hardening tests); not part of make test
check-ubsan:
	./scripts/sanitize.sh ubsan

check-valgrind:
	./scripts/sanitize.sh valgrind

demo:
	./scripts/demo.sh

# wval_proxy (proxy/, docs/scale-out.md): the PL/Proxy front end, a second
# extension with its own control file; built, installed and cleaned with wval.
.PHONY: proxy-all proxy-install proxy-clean
all: proxy-all
install: proxy-install
clean: proxy-clean
proxy-all proxy-install proxy-clean:
	$(MAKE) -C proxy $(patsubst proxy-%,%,$@) PG_CONFIG=$(PG_CONFIG)
