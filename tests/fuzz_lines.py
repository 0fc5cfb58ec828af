"""A grammar of bash command lines for the differential fuzzer (tests/test_fuzz.py).

Lines are built from the pieces bash readers disagree about: every kind of quoting, here-
documents (with tricky delimiters, continuations and bodies that never end), continuations,
``[``/``test`` with operators inside, substitutions, wrappers and shells, comments, unusual
blanks, locale assignments and options that write files; then some are mutated a character at
a time. Everything is drawn from a seeded :class:`random.Random`, so a seed names a run.
"""

from __future__ import annotations

import random

# Programs the fuzz policy allows, and ones it does not (tests/test_fuzz.py: POLICY).
ALLOWED = ["echo", "printf", "cat", "ls", "grep", "wc", "head", "git status", "git log",
           "npm test", "npm", "sort", "true", "tee", "[", "test", "git diff"]  # fmt: skip
FORBIDDEN = ["rm", "curl", "evil", "wget", "sudo", "chmod", "kill"]
WORDS = ["a", "hi", "x.txt", "-l", "--all", "src", "out/f", "1", "README.md", "*.txt", "~/k",
         "{a,b}", "a=b", "-o", "../outside/secret", "out/new.log", "x.log", "]", "-v"]  # fmt: skip
GLUE = [";", "|", "&", ">", "<", "(", ")", "`", "$(", "#", "\n", "\\\n", "&&", "||", "{", "}",
        "'", '"', "\\", "$", "<<", ">>", "|&", "\t", "  ", "=", "[", "]", "\u00a0", "\u3000",
        "!", "*", "?", "~", ",", "-", "\\\\", "$'", '$"', "${", "$((", "<(", ">("]  # fmt: skip
EXPANSIONS = ["$HOME", "${HOME}", '"$HOME"', "${X:-d}", "$1", "$#", "${#X}", "$((1+2))",
              "$((X+1))", "${X:-$(rm y)}", "~", "$'\\x3b'"]  # fmt: skip
PARSE_STATE = ["LC_ALL=zh_TW.BIG5", "export LANG=ja_JP.SJIS", "shopt -s extglob", "set -o posix",
               "alias ls=rm", "shopt -s expand_aliases"]  # fmt: skip
WRITES = ["> out/a", ">> x.log", "2>&1", "> ../outside/w", ">| out/b", "&> out/c", "> notes.txt",
          "2> /dev/null", "> /dev/null", ">&2", "< README.md", "<> out/d"]  # fmt: skip


class LineMaker:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)  # noqa: S311 - a seeded fuzzer, not a secret

    def pick(self, items: list[str]) -> str:
        return self.r.choice(items)

    # -- words ------------------------------------------------------------------------------

    def quoted(self, text: str) -> str:
        r = self.r.random()
        if r < 0.25:
            return text
        if r < 0.4:
            return "'" + text.replace("'", "") + "'"
        if r < 0.55:
            return '"' + text.replace('"', "") + '"'
        if r < 0.65:
            return "$'" + "".join(f"\\x{ord(c):02x}" if c.isalpha() else c for c in text) + "'"
        if r < 0.8 and text:
            i = self.r.randrange(len(text))
            return text[:i] + "\\" + text[i:]
        if r < 0.9 and len(text) > 1:
            i = self.r.randrange(1, len(text))
            return text[:i] + "''" + text[i:]
        return text[:1] + '"' + text[1:] + '"'

    def word(self, depth: int) -> str:
        r = self.r.random()
        if r < 0.55:
            return self.quoted(self.pick(WORDS))
        if r < 0.65 and depth < 2:
            return "$(" + self.command(depth + 1) + ")"
        if r < 0.7 and depth < 2:
            return "`" + self.command(depth + 1) + "`"
        if r < 0.75:
            return self.pick(EXPANSIONS)
        if r < 0.85:
            # glue inside quotes is data; outside it is syntax
            g = self.pick(GLUE)
            return self.pick(["'", '"']).join(["", "a" + g + "b", ""])
        return self.quoted(self.pick(WORDS)) + self.pick(GLUE) + self.pick(WORDS)

    def command_word(self, name: str) -> str:
        first, _, rest = name.partition(" ")
        r = self.r.random()
        if r < 0.6:
            spelled = first
        elif r < 0.7:
            spelled = self.quoted(first)
        elif r < 0.78:
            spelled = self.pick(["npm/../bin/", "./bin/../bin/", "bin/", "npm/"]) + first
        elif r < 0.85:
            spelled = first[:1] + "\\\n" + first[1:]
        elif r < 0.9:
            spelled = "\\" + first
        else:
            spelled = self.pick(["command ", "builtin ", "exec ", "env ", "nice ", "timeout 5 "])
            spelled += first
        return spelled + (" " + rest if rest else "")

    # -- commands ---------------------------------------------------------------------------

    def simple(self, depth: int) -> str:
        name = self.pick(ALLOWED) if self.r.random() < 0.85 else self.pick(FORBIDDEN)
        parts = []
        if self.r.random() < 0.12:
            parts.append(self.pick(["CI=1", "LC_ALL=C", "X=1", "NODE_ENV=t", "LANG=C.UTF-8"]))
        parts.append(self.command_word(name))
        parts.extend(self.word(depth) for _ in range(self.r.randrange(0, 4)))
        if self.r.random() < 0.25:
            parts.append(self.pick(WRITES))
        if name == "[":
            parts.append("]")
        return " ".join(parts)

    def command(self, depth: int = 0) -> str:
        r = self.r.random()
        if depth > 2 or r < 0.5:
            return self.simple(depth)
        if r < 0.57:
            return "( " + self.line(depth + 1) + " )"
        if r < 0.63:
            return "{ " + self.line(depth + 1) + "; }"
        if r < 0.67:
            return f"if {self.simple(depth)}; then {self.line(depth + 1)}; fi"
        if r < 0.7:
            return f"for i in a b; do {self.line(depth + 1)}; done"
        if r < 0.72:
            return f"case x in x) {self.line(depth + 1)};; esac"
        if r < 0.74:
            return f"f() {{ {self.line(depth + 1)}; }}; f"
        if r < 0.8:
            return self.heredoc(depth)
        if r < 0.84:
            return self.bracket()
        if r < 0.88:
            inner = self.line(depth + 1).replace("'", "")
            return self.pick(["bash -c ", "sh -c ", "eval "]) + "'" + inner + "'"
        if r < 0.9:
            return self.pick(["bash", "sh"]) + " <<< " + self.quoted(self.simple(depth + 1))
        if r < 0.93:
            return self.pick(["sort -o out/s x.txt", "sort -o ../outside/s x",
                              "git diff --output=../outside/d", "git log --output=out/l",
                              "tee out/t < README.md", "git diff --out=notes.txt",
                              "sort -no notes.txt"])  # fmt: skip
        if r < 0.95:
            return self.pick(PARSE_STATE)
        if r < 0.98:
            return self.trap(depth)
        return self.simple(depth) + " # " + self.simple(depth)

    def trap(self, depth: int) -> str:
        """What a red team found in the walk's model of commands, in new combinations."""
        move = self.pick(["cd out", "pushd out", "pushd -n out", "pushd +1", "popd",
                          "command cd out", "builtin cd ..", "cd -", "cd() { true; }; cd out",
                          "f() { cd ..; }; f"])  # fmt: skip
        write = self.pick(["echo x > README.md", "echo y > out/ok", "echo z > ../outside/w",
                           "sort -o README.md x.txt", "sort --o=notes.txt x"])  # fmt: skip
        code = self.pick([
            "bash -c -k 'bash -c true X=1'", "bash -O extglob -c 'echo !(x)'",
            "bash -c -l true", "bash -xc true", "printf -v HOME %s out",
            "printf '-va[$(rm q)]' %s x", "read PATH <<< /tmp", "for PATH in x; do ls; done",
            "sed -n '1e rm q' x.txt", "sed 's/a/b/w out/s' x.txt", "sed 's/a/b/e' x.txt",
            "sort -S 1K --compress-program=evil x.txt", "true() { evil; }; true",
            "printf -vPS4 %s x", "echo x 3<notes.txt >/dev/fd/3", "echo x 1<x.txt >/dev/stdout",
            "echo x >&\u0661", "git diff {--output=notes.txt,}", "sort {-o,notes.txt} x.txt",
            "for x in --output=notes.txt; do git diff \"$x\"; done", "cat < ../outside/secret",
            "f() { git log \"$@\"; }; f --output=notes.txt", "sed -ne'1e evil' x.txt",
            "sed -n '1,+1e evil' x.txt", "sh -c 'echo $'\\'x'", "sed -n p ../outside/secret",
            "echo > '-e1e evil;.log'; sed -n 1p *", "git diff $(echo --output=notes.txt)",
        ])  # fmt: skip
        joiner = self.pick([" && ", "; ", "\n"])
        parts = [move, write] if self.r.random() < 0.6 else [code, self.simple(depth)]
        return joiner.join(parts)

    def bracket(self) -> str:
        inside = self.pick(["a | rm x", "x > out/q", "x > ../outside/q", "-f a ; rm x",
                            "a & rm x", "-v 'a[$(rm x)]'", '-v "a[\\$(rm x)]"',
                            "-v $'a[$(rm x)]'", "-v a\\[\\$\\(rm\\ x\\)\\]", "a < b",
                            "-n x", "a = a", "( a )", "a -a b", "! -e x"])  # fmt: skip
        return self.pick(["[ ", "test "]) + inside + (" ]" if self.r.random() < 0.9 else "")

    def heredoc(self, depth: int) -> str:
        delim = self.pick(["EOF", "'EOF'", '"EOF"', "\\EOF", 'E"O"F', "EOF"])
        dash = self.r.random() < 0.25
        end = "EOF"
        lines = []
        for _ in range(self.r.randrange(0, 4)):
            lines.append(self.pick(["hello", "$(rm -rf x)", "`rm x`", "${X:-$(rm z)}",
                                    "line \\", "EO\\", "F", "\tEOF", "EOF ", "rm x",
                                    "echo a\\\\;rm x", "$HOME", "\\$(rm q)", "echo hi",
                                    "${X:-", "}", "$(", ")"]))  # fmt: skip
        if dash:
            lines = ["\t" + x for x in lines]
            end = "\t" + end
        body = "\n".join(lines)
        feed = self.pick(["cat", "cat", "bash", "sh", "grep a", "tee out/h"])
        tail = "" if self.r.random() < 0.1 else "\n" + end
        after = "" if self.r.random() < 0.5 else "\n" + self.simple(depth)
        op = "<<-" if dash else "<<"
        return f"{feed} {op}{delim}\n{body}{tail}{after}"

    def line(self, depth: int = 0) -> str:
        out = [self.command(depth)]
        for _ in range(self.r.randrange(0, 3 if depth == 0 else 2)):
            out.append(self.pick([" ; ", " && ", " || ", " | ", " & ", "\n", " |& "]))
            out.append(self.command(depth))
        return "".join(out)

    def mutate(self, text: str) -> str:
        chars = list(text)
        for _ in range(self.r.randrange(1, 4)):
            i = self.r.randrange(len(chars) + 1)
            r = self.r.random()
            if r < 0.6:
                chars.insert(i, self.pick(GLUE))
            elif r < 0.8 and chars:
                del chars[min(i, len(chars) - 1)]
            elif chars:
                j = min(i, len(chars) - 1)
                chars.insert(j, chars[j])
        return "".join(chars)

    def make(self) -> str:
        text = self.line()
        if self.r.random() < 0.3:
            text = self.mutate(text)
        return text
