"""One way to finish a benchmark figure: its title, a provenance footer (command, code, seeds,
threads, versions: what a reader needs to trust or rerun it), saved and closed."""

import textwrap

FOOTER_FONT_SIZE = 6
CHARS_PER_INCH = 19      # 6-pt characters that fit in an inch of footer
LINE_INCHES = 0.11       # height of a 6-pt footer line
TITLE_FONT_SIZE = 10
TITLE_CHARS_PER_INCH = 12  # 10-pt characters that fit in an inch of title
TITLE_LINE_INCHES = 0.17   # height of a 10-pt title line


def versions_text(*versions, leave_out=()):
    """``torch 2.13.0, numpy 2.4.6, ...``: the package versions of one record or several, one way
    everywhere; where runs differ every version used is named (``sentence-transformers 6.2.0 /
    6.3.0``), so a table built from several sessions' runs names no version a run did not use."""
    seen = {}
    for record_versions in versions:
        for name, version in (record_versions or {}).items():
            if version and name not in leave_out and version not in seen.setdefault(name, []):
                seen[name].append(version)
    return ", ".join(f"{name} {' / '.join(found)}" for name, found in seen.items())


def finish_figure(fig, path, footer, title=None, dpi=80):
    """Wrap ``footer`` below the axes and ``title`` above them to the figure's width (a long
    comparison's title was clipped at both edges), save to ``path``."""
    import matplotlib.pyplot as plt

    lines = textwrap.wrap(footer.replace("`", ""), width=int(fig.get_figwidth() * CHARS_PER_INCH))
    footer_height = (0.05 + LINE_INCHES * len(lines)) / fig.get_figheight()
    title_top = 1.0
    if title:
        title_lines = textwrap.wrap(title, width=int(fig.get_figwidth() * TITLE_CHARS_PER_INCH))
        fig.suptitle("\n".join(title_lines), fontsize=TITLE_FONT_SIZE)
        title_top = 1.0 - (0.05 + TITLE_LINE_INCHES * len(title_lines)) / fig.get_figheight()
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=FOOTER_FONT_SIZE, va="bottom")
    fig.tight_layout(rect=(0, footer_height, 1, title_top))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
