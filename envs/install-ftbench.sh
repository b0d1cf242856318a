#!/usr/bin/env bash
# Snakemake runs this after creating a conda env (each envs/<env>.post-deploy.sh links here). It makes
# ftbench importable without installing ftbench's own dependencies (the env pins what its rules need): a .pth
# whose one line adds $FTBENCH_SRC to sys.path at interpreter start. The Snakefile sets FTBENCH_SRC to the
# checkout's src/ and passes it to every job (envvars), so one env serves any checkout and always runs its
# current code, as an editable install would.
set -euo pipefail
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import os, sys; src = os.environ.get("FTBENCH_SRC"); src and sys.path.append(src)' >"$site/ftbench-checkout.pth"
