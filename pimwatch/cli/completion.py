"""``pimwatch completion bash|zsh|fish``: a shell completion script, generated from the argparse
parser itself (so it never drifts from the commands).

No dependency: ``shtab`` writes bash and zsh but not fish, and ``argcomplete`` runs Python (and
imports pimwatch) on every Tab press; a static script of the commands, their options and choices is
all three shells need. Install::

    pimwatch completion bash > ~/.local/share/bash-completion/completions/pimwatch
    pimwatch completion zsh > "${fpath[1]}/_pimwatch"      # or: source <(pimwatch completion zsh)
    pimwatch completion fish > ~/.config/fish/completions/pimwatch.fish
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any

SHELLS = ("bash", "zsh", "fish")


# Options and positionals whose value is a path (file names are completed for them).
PATH_DESTS = frozenset({"config", "state", "quarantine", "paths", "path", "dir", "to", "templates"})


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]  # -v, --verbose
    help: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    path: bool = False  # the value is a path (else, without choices: free text, nothing completed)


@dataclass
class Command:
    name: str
    help: str
    options: list[Option] = field(default_factory=list)
    words: tuple[str, ...] = ()  # the first positional's choices
    paths: bool = False  # the positionals are paths


def add_parser(sub: Any) -> None:
    cp = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    cp.add_argument("shell", choices=SHELLS)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, detectors: list[str]) -> int:
    sys.stdout.write(script(parser, args.shell, {"--detector": detectors}))
    return 0


def script(parser: argparse.ArgumentParser, shell: str, values: dict[str, list[str]] | None = None) -> str:
    """The script for ``shell``; ``values``: the words to complete for options without choices
    (``--detector``: the detector ids)."""
    top, commands = model(parser, values or {})
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](parser.prog, top, commands)


def _help(action: argparse.Action) -> str:
    text = (action.help or "").split("(")[0].strip() if action.help != argparse.SUPPRESS else ""
    return " ".join(text.split())[:70]


def _command(name: str, help: str, parser: argparse.ArgumentParser, values: dict[str, list[str]]) -> Command:
    cmd = Command(name, " ".join(help.split())[:70])
    for action in parser._actions:  # argparse keeps no public list of its actions
        if isinstance(action, argparse._SubParsersAction):
            continue
        choices = tuple(str(c) for c in action.choices) if action.choices else ()
        if action.option_strings:
            long = max(action.option_strings, key=len)
            choices = choices or tuple(values.get(long, ()))
            path = action.nargs != 0 and not choices and action.dest in PATH_DESTS
            cmd.options.append(
                Option(tuple(action.option_strings), _help(action), action.nargs != 0, choices, path)
            )
        elif not cmd.words and not cmd.paths:
            cmd.words, cmd.paths = choices, not choices and action.dest in PATH_DESTS
    return cmd


def model(
    parser: argparse.ArgumentParser, values: dict[str, list[str]] | None = None
) -> tuple[list[Option], list[Command]]:
    """The top-level options, and each sub-command with its options and first positional."""
    top = _command(parser.prog, "", parser, values or {}).options
    commands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                commands.append(_command(name, helps.get(name, ""), sub, values or {}))
    return top, commands


def _pick(words: tuple[str, ...], path: bool, listed: str, files: str, nothing: str) -> str:
    """A shell's completion of a value: ``listed`` with the words (choices: plain identifiers, no
    quoting needed) in its ``{}``, else ``files`` for a path, else ``nothing``."""
    return listed.format(" ".join(words)) if words else (files if path else nothing)


_BASH = ('COMPREPLY=($(compgen -W "{}" -- "$cur"))', 'COMPREPLY=($(compgen -f -- "$cur"))', "COMPREPLY=()")


def _bash(prog: str, top: list[Option], commands: list[Command]) -> str:
    fn = "_" + re.sub(r"\W", "_", prog)
    top_words = " ".join([c.name for c in commands] + [n for o in top for n in o.names])
    cases = []
    for c in commands:
        values = [
            f"        {'|'.join(o.names)}) {_pick(o.choices, o.path, *_BASH)}; return ;;"
            for o in c.options
            if o.takes_value
        ]
        flags = " ".join(n for o in c.options for n in o.names)
        rest = _pick(c.words, c.paths, *_BASH)
        cases.append(
            f"    {c.name})\n"
            + ('      case "$prev" in\n' + "\n".join(values) + "\n      esac\n" if values else "")
            + f'      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{flags}" -- "$cur")); '
            + f"else {rest}; fi\n      ;;"
        )
    return f"""# bash completion for {prog} (generated by `{prog} completion bash`)
{fn}() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
  done
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W "{top_words}" -- "$cur"))
    return
  fi
  case "$cmd" in
{chr(10).join(cases)}
  esac
}}
complete -o filenames -F {fn} {prog}
"""


def _zq(text: str) -> str:
    """Text inside a zsh single-quoted _arguments spec: quotes, brackets and colons escaped."""
    return text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zsh(prog: str, top: list[Option], commands: list[Command]) -> str:
    fn = "_" + re.sub(r"\W", "_", prog)
    described = "\n".join(f"    '{_zq(c.name)}:{_zq(c.help)}'" for c in commands)
    cases = []
    for c in commands:
        specs = []
        for o in c.options:
            names = o.names[0] if len(o.names) == 1 else "{" + ",".join(o.names) + "}"
            excl = f"'({' '.join(o.names)})'" if len(o.names) > 1 else ""
            value = (
                _pick(o.choices, o.path, ":value:({})", ":file:_files", ":value: ") if o.takes_value else ""
            )
            specs.append(f"{excl}{names}'[{_zq(o.help)}]{value}'")
        rest = _pick(c.words, c.paths, "'*:word:({})'", "'*:file:_files'", "")
        cases.append(
            f"    {c.name})\n      _arguments -s \\\n        "
            + " \\\n        ".join([*specs, rest] if rest else specs)
            + " ;;"
        )
    return f"""#compdef {prog}
# zsh completion for {prog} (generated by `{prog} completion zsh`)
{fn}() {{
  local -a commands
  commands=(
{described}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands '{prog} command' commands
    return
  fi
  local cmd=$words[2]
  shift words
  (( CURRENT-- ))
  case $cmd in
{chr(10).join(cases)}
  esac
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  {fn} "$@"
else
  compdef {fn} {prog}
fi
"""


def _fq(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(prog: str, top: list[Option], commands: list[Command]) -> str:
    lines = [
        f"# fish completion for {prog} (generated by `{prog} completion fish`)",
        f"complete -c {prog} -f",
    ]
    for c in commands:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand -a {c.name} -d {_fq(c.help)}")
    for o in top:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand {_fish_names(o)} -d {_fq(o.help)}")
    for c in commands:
        when = f"-n '__fish_seen_subcommand_from {c.name}'"
        for o in c.options:
            value = _pick(o.choices, o.path, " -x -a '{}'", " -r -F", " -x") if o.takes_value else ""
            lines.append(f"complete -c {prog} {when} {_fish_names(o)}{value} -d {_fq(o.help)}")
        rest = _pick(c.words, c.paths, " -x -a '{}'", " -F", "")
        if rest:
            lines.append(f"complete -c {prog} {when}{rest}")
    return "\n".join(lines) + "\n"


def _fish_names(o: Option) -> str:
    out = []
    for n in o.names:
        out.append(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}")
    return " ".join(out)
