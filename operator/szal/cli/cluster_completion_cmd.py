"""``szal completion bash|zsh``: shell completion, with names read from the cluster.

``source <(szal completion bash)`` (or ``zsh``) completes ``szal`` and
``kubectl-szal``: subcommands, options, ``-o`` formats, ``--context``
names from the kubeconfig, namespaces, and - from the cluster, in the
namespace and context already typed - run names (``get``, ``logs``,
``cancel``...), step names of the run (``logs RUN <TAB>``) and Workflow
names (``submit --from workflow/<TAB>``). ``kubectl szal <TAB>`` works
through the ``kubectl_complete-szal`` executable kubectl looks for.

Decisions: the shell scripts are three lines each; all the logic is
:func:`complete` in Python (``szal __complete WORDS...``), so bash, zsh and
kubectl complete alike and the logic is tested without a shell. A cluster
that cannot be reached completes nothing (never an error on the prompt),
and each lookup is bounded by a short timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from szal.cli.commanding import EXIT_OK, Subcommand

RUN_COMMANDS = frozenset({"get", "logs", "cancel", "suspend", "resume", "delete", "retry"})
VALUE_OPTIONS = frozenset(
    {
        "-n",
        "--namespace",
        "--context",
        "--kubeconfig",
        "-o",
        "--output",
        "-l",
        "--selector",
        "--from",
        "-p",
        "--param",
        "--name",
        "--attempt",
        "--db",
        "--phase",
        "--limit",
    }
)

BASH = r"""_szal() {
  local IFS=$'\n' words
  words=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
  COMPREPLY=( $(compgen -W "$words" -- "${COMP_WORDS[COMP_CWORD]}") )
}
complete -o default -F _szal szal kubectl-szal
"""

ZSH = r"""#compdef szal kubectl-szal
_szal() {
  local -a candidates
  candidates=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _szal szal kubectl-szal
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")


def handle(args: argparse.Namespace) -> int:
    sys.stdout.write(BASH if args.shell == "bash" else ZSH)
    return EXIT_OK


COMMAND = Subcommand(
    name="completion",
    help="print a shell completion script (bash or zsh)",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)


# --- the logic ------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from szal.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    names: list[str] = []
    choices: dict[str, list[str]] = {}
    for action in parser._actions:
        names.extend(o for o in action.option_strings if o.startswith("--") or len(o) == 2)
        if action.choices and action.option_strings:
            for option in action.option_strings:
                choices[option] = [str(c) for c in action.choices]
    return names, choices


def _given(words: Sequence[str], *options: str) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word in options:
            return words[i + 1]
        for option in options:
            if option.startswith("--") and word.startswith(option + "="):
                return word.split("=", 1)[1]
    return None


def _positionals(words: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in VALUE_OPTIONS
        else:
            out.append(word)
    return out


async def _cluster_names(words: Sequence[str], kind: str, run: str | None = None) -> list[str]:
    from szal.cli.cluster_api import RUNS, WORKFLOWS, connect, run_view

    args = argparse.Namespace(
        kubeconfig=_given(words, "--kubeconfig"),
        context=_given(words, "--context"),
        namespace=_given(words, "-n", "--namespace"),
    )
    cluster = await connect(args)
    try:
        if kind == "namespaces":
            return [n["metadata"]["name"] for n in await cluster.client.list("/api/v1/namespaces")]
        if kind == "steps" and run is not None:
            workflow, state = run_view(await cluster.client.get(cluster.path(RUNS, run)))
            return [s.name for s in workflow.steps] if workflow else list(state.steps)
        plural = RUNS if kind == "runs" else WORKFLOWS
        return [r["metadata"]["name"] for r in await cluster.client.list(cluster.path(plural))]
    finally:
        await cluster.client.close()


def _contexts(words: Sequence[str]) -> list[str]:
    from szal.runners.kubernetes.credentials import (
        DEFAULT_KUBECONFIG,
        kubeconfig_contexts,
        kubeconfig_paths,
    )

    paths = kubeconfig_paths(_given(words, "--kubeconfig")) or [DEFAULT_KUBECONFIG.expanduser()]
    contexts, _ = kubeconfig_contexts([p for p in paths if p.is_file()])
    return [str(c.get("name")) for c in contexts]


def complete(words: Sequence[str]) -> list[str]:
    """Candidates for the last of ``words`` (the words after ``szal``; the last may be '')."""
    words = list(words) or [""]
    current, prior = words[-1], words[:-1]
    commands = {name: p for name, p in _subparsers().items() if not name.startswith("_")}
    if not prior:
        return sorted(n for n in commands if n.startswith(current))
    command = commands.get(prior[0])
    if command is None:
        return []
    options, choices = _options(command)
    previous = prior[-1]
    try:
        if previous in choices:
            return [c for c in choices[previous] if c.startswith(current)]
        if previous in ("-n", "--namespace"):
            return _filter(asyncio.run(_cluster_names(words, "namespaces")), current)
        if previous == "--context":
            return _filter(_contexts(words), current)
        if previous == "--from":
            names = asyncio.run(_cluster_names(words, "workflows"))
            return _filter([f"workflow/{n}" for n in names], current)
        if previous in VALUE_OPTIONS:
            return []
        if current.startswith("-"):
            return sorted(o for o in options if o.startswith(current))
        positionals = _positionals(prior[1:])
        if prior[0] in RUN_COMMANDS and (
            not positionals or prior[0] in ("cancel", "suspend", "resume", "delete")
        ):
            return _filter(asyncio.run(_cluster_names(words, "runs")), current)
        if prior[0] == "logs" and len(positionals) == 1:
            return _filter(asyncio.run(_cluster_names(words, "steps", positionals[0])), current)
    except Exception:  # a prompt never shows a traceback: no candidates instead
        return []
    return []


def _filter(names: Sequence[str], prefix: str) -> list[str]:
    return sorted(n for n in names if n.startswith(prefix))


def complete_main(argv: Sequence[str] | None = None) -> int:
    """``szal __complete WORDS...`` (and ``kubectl_complete-szal WORDS...``)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] == "__complete":
        words = words[1:]
    for candidate in complete(words):
        print(candidate)
    return EXIT_OK


def kubectl_complete() -> int:
    """Entry point of ``kubectl_complete-szal``: candidates, then cobra's 'no files' directive."""
    complete_main()
    print(":4")
    return EXIT_OK
