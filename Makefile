# Ferry: the two commands of the README, and the pieces they are made of. Run as root.
SHELL := /bin/bash
VENV := .venv
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test setup unit sanity versions lint integration bench reliability lab-down vm-test vm-smoke vm-bench vm-lab-down

## The main job: a local lab of 3 hosts, CRIU on each, a live migration of a counter and a Redis.
demo: setup
	ansible-playbook ferry.migrate.demo

## Every test: unit, ansible-test sanity (every ansible-core claimed), the ecosystem's checkers, integration on the real lab (torn down at the end).
test: setup sanity versions lint
	pytest -ra tests/unit tests/integration

setup:
	hack/bootstrap.sh

unit: setup
	pytest -q tests/unit

sanity: setup
	hack/ansible-test.sh sanity --venv --python "$$($(VENV)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

## Sanity and unit tests on the older ansible-core releases the collection claims (2.16-2.18).
versions: setup
	hack/versions.sh

## ansible-lint (production), galaxy-importer, antsibull-changelog, ansible-builder: as Galaxy and AWX users meet the collection.
lint: setup
	hack/lint.sh

integration: setup
	pytest -ra tests/integration

## Measurements (not tests): figures go to docs/benchmarks.md.
bench: setup
	python bench/planner.py
	python bench/transfer.py
	python bench/methods.py
	python bench/gap.py
	python bench/drain.py

## Fault matrix (20 runs of each fault) and soak (200 migrations under load): docs/reliability.md. About 2 hours.
reliability: setup
	ansible-playbook ferry.migrate.lab -e lab_hosts=4
	python tests/reliability/matrix.py 20
	python tests/reliability/soak.py 200

lab-down: setup
	ansible-playbook ferry.migrate.lab -e lab_state=absent

## The VM lab (issue #17): two QEMU guests on Debian's cloud kernel, which tracks dirty memory, beside
## the namespace lab; its root filesystem is built once (debootstrap) and cached. The tests in tests/vm.
VM_LAB := FERRY_LAB_KIND=vm FERRY_LAB_DIR=/var/lib/ferry-lab-vm FERRY_LAB_NET=10.197.0 FERRY_LAB_PREFIX=ferryvm FERRY_LAB_FLEET=simple
vm-test: setup
	$(VM_LAB) pytest -ra tests/vm

## CI's share of the VM lab: the guests boot their own kernel, CRIU's pre-dumps there track dirty memory,
## a tree that keeps writing moves by pre-copy (or, outrunning it, stays put as the policy says), and a
## guest's kernel is upgraded by the kernel_upgrade playbook while its trees run on.
vm-smoke: setup
	$(VM_LAB) pytest -ra tests/vm -k "dirty_memory or pre_dump or pre_copy or newer_kernel"

## The pre-copy benchmark (issue #17), in the VM lab: downtime by dirty rate, to docs/benchmarks.md.
vm-bench: setup
	$(VM_LAB) python bench/dirty.py

vm-lab-down: setup
	$(VM_LAB) ansible-playbook ferry.migrate.lab -e lab_state=absent
