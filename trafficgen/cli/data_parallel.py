"""``--num-processes N`` of `trafficgen train` and `trafficgen tm train`: re-run the command in N
processes through Hugging Face accelerate's launcher (data-parallel training, issue 19).

The launched processes see ``WORLD_SIZE > 1`` and train instead of launching again; each joins
the process group in :func:`~trafficgen.generators.training.train_loop` (gloo on the CPU, NCCL
on GPUs), and only the main process writes the model and its logs
(:func:`~trafficgen.generators.training.is_main_process`).
"""
from __future__ import annotations

import typer


def option_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (not its default)."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer's own copy of click)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def command_path(ctx: typer.Context) -> list[str]:
    """The sub-command names from the program down to ``ctx``'s command: ``["train"]``,
    ``["tm", "train"]``."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return names[::-1] or ["train"]


def given_arguments(ctx: typer.Context, *, skip: tuple[str, ...] = ("num_processes",)) -> list[str]:
    """The command line of ``ctx``'s command with the options the user gave (defaults left out,
    each flag in its longest spelling, ``skip`` left out)."""
    argv: list[str] = []
    for param in ctx.command.params:
        if param.name is None or not option_given(ctx, param.name) or param.name in skip:
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            argv.append(max(param.opts if value else param.secondary_opts, key=len))
        elif isinstance(value, (list, tuple)):  # a repeatable option
            for item in value:
                argv += [max(param.opts, key=len), str(item)]
        else:
            argv += [max(param.opts, key=len), str(value)]
    return argv


def launch_data_parallel(ctx: typer.Context, num_processes: int, device: str) -> None:
    """Re-run this command in ``num_processes`` processes through accelerate's launcher
    (``accelerate launch --multi_gpu --num_processes N -m trafficgen ...``, i.e. torch's elastic
    launcher; each process joins the group in :func:`~trafficgen.generators.training.train_loop`,
    gloo on the CPU). The options given are passed on unchanged; the launched processes see
    ``WORLD_SIZE > 1`` and train instead of launching again."""
    import os
    import socket

    from accelerate.commands.launch import launch_command, launch_command_parser

    from trafficgen._device import resolve_device
    from trafficgen.errors import TrafficgenError

    argv = command_path(ctx) + given_arguments(ctx)
    with socket.socket() as sock:  # a free port: other jobs on this machine may hold accelerate's 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cpu = resolve_device(device, option="--device").type != "cuda"
    args = launch_command_parser().parse_args(
        ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
         "--module", "trafficgen", *argv])
    env = {"GLOO_SOCKET_IFNAME": "lo"} if cpu else {}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        launch_command(args)
    except Exception as exc:  # noqa: BLE001  torch's ChildFailedError, CalledProcessError: one line
        if isinstance(exc, TrafficgenError):
            raise
        raise TrafficgenError(f"data-parallel training in {num_processes} processes failed "
                              f"({type(exc).__name__}); see the processes' messages above") from exc
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_num_processes(num_processes: int) -> None:
    """``--num-processes`` must be >= 1 (one line before any work)."""
    from trafficgen.errors import ConfigError

    if num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {num_processes}")


def launched_here(ctx: typer.Context, num_processes: int, device: str) -> bool:
    """For ``--num-processes N > 1`` in a process that no launcher started: run the command in N
    processes (:func:`launch_data_parallel`) and return True (the caller is done); else False."""
    from trafficgen.generators.training import launched_world_size

    if num_processes > 1 and launched_world_size() == 1:
        launch_data_parallel(ctx, num_processes, device)
        return True
    return False


__all__ = ["option_given", "command_path", "given_arguments", "launch_data_parallel", "check_num_processes",
           "launched_here"]
