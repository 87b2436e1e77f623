"""The console entry point: completion fast path, then the app, then SPEC §4's exit codes.

This is the one place where exceptions become messages and exit codes. It imports
neither typer nor rich before it knows a command will actually run.
"""

from __future__ import annotations

import os
import signal
import sys

PROG = "modelreg"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that `finally` blocks clean up temp files."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(message: str, hint: str | None = None) -> None:
    from .output import term_safe

    # Messages quote user input (a file name, a --reason): no control reaches the terminal.
    lines = [f"{PROG}: error: {term_safe(message)}"]
    if hint:
        lines.append(f"hint: {term_safe(hint)}")
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def _silence_stdout() -> None:
    """After stdout failed or its reader left, keep interpreter shutdown from complaining.

    Data still buffered would be flushed at exit and fail again, with an "Exception
    ignored" message; fd 1 now leads to /dev/null, where that flush succeeds.
    """
    if sys.stdout is None:
        return  # fd 1 was closed at start-up: nothing is buffered, and it may now be another file
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _flush_stdout() -> str | None:
    """Flush stdout; on a write error, the one-line message to print (a closed pipe is no error)."""
    if sys.stdout is None:
        return None
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:  # `modelreg ls > /dev/full`: the result never arrived
        _silence_stdout()
        return f"cannot write to standard output: {exc.strerror or exc}"
    except ValueError:  # closed by the code that ran
        pass
    return None


def _traceback() -> None:
    """MODELREG_DEBUG=1: the traceback on stderr; the exit code stays the error's."""
    import traceback

    try:
        traceback.print_exc(file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass


def _typed_command(group, args: list[str]) -> str:
    """The command path as typed (`modelreg config get`), for errors Click raises without one."""
    path, node = [PROG], group
    for arg in args:
        sub = getattr(node, "commands", {}).get(arg)
        if sub is not None:
            path.append(arg)
            node = sub
        elif not arg.startswith("-"):
            break
    return " ".join(path)


def _usage_message(exc, group, args: list[str]) -> tuple[str, str | None]:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else _typed_command(group, args)
    return exc.format_message(), f"run '{command} --help' for usage"


def run(argv: list[str] | None = None) -> int:
    if os.environ.get("_MODELREG_COMPLETE") and not os.environ.get("MODELREG_COMPLETE_VIA_TYPER"):
        try:
            from .complete import serve
        except ImportError:
            serve = None
        if serve is not None:
            code = serve()
            if code is not None:
                return code

    args = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("MODELREG_DEBUG") == "1"
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        import typer.exceptions
        import typer.main

        from ..errors import Error
        from ._typer_private import click_exceptions, is_click_stdout_wrapper, raised_in_click_echo
        from .app import app

        # What the imports made lives as long as the process: leave it out of the cyclic
        # collector's scans, which otherwise grow with every object a command allocates
        # (measured: `ls NAME` of 10,000 versions spent ~15 ms more in collections).
        import gc

        gc.freeze()
        from .output import PipeClosed, StdoutFailed

        command = typer.main.get_command(app)
        click_errors = click_exceptions()
        try:
            result = command.main(args=args, prog_name=PROG, standalone_mode=False)
        except PipeClosed:
            _silence_stdout()
            return 0
        except Error as exc:
            if debug:
                _traceback()
            if isinstance(exc, StdoutFailed):
                _silence_stdout()
            _error(exc.message, exc.hint)
            return exc.exit_code
        except click_errors.NoArgsIsHelpError as exc:
            _error("missing command", f"run '{exc.ctx.command_path} --help' to list the commands")
            return 2
        except click_errors.UsageError as exc:
            _error(*_usage_message(exc, command, args))
            return 2
        except click_errors.ClickException as exc:
            _error(exc.format_message())
            return exc.exit_code
        except typer.exceptions.Abort:
            _error("interrupted")
            return 130
        except SystemExit:
            # Click's answer to a closed pipe in its own output (--help, --version) is
            # exit 1 with stdout wrapped; SPEC §4 wants the quiet 0 of any closed pipe.
            if is_click_stdout_wrapper(sys.stdout):
                _silence_stdout()
                return 0
            raise
        failed = _flush_stdout()  # what is still buffered must arrive before we claim success
        if failed is not None:
            _error(failed)
            return 1
        if isinstance(result, int):
            if result == 130:
                _error("interrupted")
            return result
        return 0
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Terminated:
        _error("terminated")
        return 143
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except Exception as exc:  # a bug: say so in one line, trace only on request
        if debug:
            _traceback()
        if isinstance(exc, OSError) and raised_in_click_echo(exc):  # Click's --help hit a full disk
            _flush_stdout()
            _error(f"cannot write to standard output: {exc.strerror or exc}")
            return 1
        _error(f"internal error: {type(exc).__name__}: {exc}", "rerun with MODELREG_DEBUG=1 and report the traceback")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def main() -> int:
    return run()


if __name__ == "__main__":
    sys.exit(main())
