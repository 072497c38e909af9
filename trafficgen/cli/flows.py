"""`trafficgen ingest` (captures -> FlowSet file) and `trafficgen info` (what is in a FlowSet file)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

_MAX_WARNINGS_SHOWN = 10
_MAX_PACKETS = 10_000  # = trafficgen.data.flows.pcap.MAX_PACKETS (not imported here: --help stays fast)


def register(app: typer.Typer, tm_app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        inputs: list[Path] = typer.Argument(..., help="pcap/pcapng files or directories (searched recursively)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output FlowSet: .parquet, .jsonl or .csv."),
        labels: Path | None = typer.Option(None, "--labels", help="nDPI-format labels CSV to join."),
        label_by: str | None = typer.Option(None, "--label-by", help="file | folder | ndpi (nfstream)."),
        label_column: str = typer.Option("app", "--label-column", help="Labels CSV column: app, ndpi_proto, category."),
        packets: int = typer.Option(10, "--packets", help=f"Keep the first N payload packets of each biflow "
                                    f"(at most {_MAX_PACKETS}; memory grows with flows x N)."),
        idle_timeout: float = typer.Option(120.0, "--idle-timeout", help="Split a biflow after this idle gap (s)."),
        split_on_fin: bool = typer.Option(False, "--split-on-fin", help="New biflow at a SYN after FIN/RST."),
        keep_zero_payload: bool = typer.Option(False, "--keep-zero-payload", help="Keep packets without payload."),
        min_packets: int = typer.Option(1, "--min-packets", help="Drop biflows with fewer stored packets "
                                        "(at most --packets)."),
        min_count: int = typer.Option(0, "--min-count", help="Drop classes with fewer flows (labelled input)."),
        on_error: str = typer.Option("skip", "--on-error", help="skip | raise: what to do with unreadable captures "
                                     "(when none can be read, ingest fails either way)."),
        strict: bool = typer.Option(False, "--strict", help="A truncated last record is an error, not a warning."),
        jobs: int = typer.Option(1, "--jobs", "-j", help="Captures read at once, one worker process each "
                                 "(0: one per CPU core). The output is the same for every value."),
    ) -> None:
        """Read captures into per-biflow signed payload-length sequences (+ labels, provenance).

        Each capture streams through the reader (memory grows with its flows, not its size);
        progress in MB of captures read appears on stderr after a second.
        """
        import warnings

        from trafficgen.data.flows.pcap import IngestWarning, read_pcaps
        from trafficgen.errors import ConfigError

        if out.suffix.lower() not in (".parquet", ".jsonl", ".csv"):
            raise ConfigError(f"output must end in .parquet, .jsonl or .csv, got {out.name!r}")
        if not 1 <= packets <= _MAX_PACKETS:
            raise ConfigError(f"--packets must lie in [1, {_MAX_PACKETS}], got {packets}")
        if min_packets > packets:
            raise ConfigError(f"--min-packets {min_packets} is larger than --packets {packets}: a flow stores "
                              f"at most --packets packets, so every flow would be dropped")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IngestWarning)
            try:
                flows = read_pcaps(inputs, labels=labels, label_by=label_by, progress=True, on_error=on_error,
                                   max_packets=packets, idle_timeout=idle_timeout, split_on_fin=split_on_fin,
                                   keep_zero_payload=keep_zero_payload, min_packets=min_packets, strict=strict,
                                   label_column=label_column, jobs=jobs)
            except MemoryError:
                raise ConfigError(f"out of memory while ingesting with --packets {packets} (every flow stores "
                                  f"{packets} columns): lower --packets or ingest fewer captures at once") from None
        shown = [w for w in caught if issubclass(w.category, IngestWarning)]
        for w in shown[:_MAX_WARNINGS_SHOWN]:
            typer.echo(f"warning: {w.message}", err=True)
        if len(shown) > _MAX_WARNINGS_SHOWN:
            typer.echo(f"warning: ... {len(shown) - _MAX_WARNINGS_SHOWN} more", err=True)
        if min_count > 0:
            if flows.labels is None:
                raise ConfigError("--min-count needs labelled flows (--labels or --label-by)")
            meta = flows.meta
            flows = flows.min_class_count(min_count) if len(flows) else flows
            flows.meta = meta
        flows.save(out)
        n_cls = f", {len(flows.classes)} classes" if flows.labels is not None else ""
        st = flows.meta["ingest_stats"]
        typer.echo(f"wrote {out}: {len(flows)} flows{n_cls} from {st['files']} captures "
                   f"({st['decoded']} of {st['packets']} packets used)")

    @app.command("info")
    def info(
        path: Path = typer.Argument(..., help="A FlowSet file (.parquet, .jsonl, .csv)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Classes, counts and the packets-per-flow histogram of a FlowSet file."""
        from trafficgen.data.flowset import FlowSet

        flows = FlowSet.read(path)
        summary = flows.summary()
        if "ingest_stats" in flows.meta:
            summary["ingest_stats"] = flows.meta["ingest_stats"]
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"[bold]{path}[/bold]: {len(flows)} flows, max_packets={flows.max_packets}, "
                      f"{summary['n_classes']} classes")
        if flows.labels is not None:
            t = Table(title="classes")
            t.add_column("class")
            t.add_column("flows", justify="right")
            for name, n in sorted(summary["class_counts"].items(), key=lambda kv: (-kv[1], kv[0])):
                t.add_row(name, str(n))
            console.print(t)
        hist = summary["packets_per_flow"]["histogram"]
        top = max(hist) if hist else 0
        h = Table(title="packets per flow")
        h.add_column("packets", justify="right")
        h.add_column("flows", justify="right")
        h.add_column("")
        for k, n in enumerate(hist):
            if k == 0 and n == 0:
                continue
            h.add_row(str(k), str(n), "#" * (0 if top == 0 else round(40 * n / top)))
        console.print(h)
        pl = summary["payload_length"]
        console.print(f"payload length: min {pl['min']}, max {pl['max']}, mean |x| {pl['mean_abs']:.1f}, "
                      f"client->server fraction {pl['client_to_server_fraction']:.3f}")
