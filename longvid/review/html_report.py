"""report.html: one self-contained page per render (no script, no external file but the video).

Jinja2 with autoescaping writes it, so every piece of user text (prompts, scene text,
character names, error messages) is HTML-escaped. The contact sheet is embedded as a data
URI; the video is a `<video>` whose `src` the caller chooses: "final.mp4" beside the report
in the run folder, or a (signed) API URL when the report is served over HTTP.
"""

from __future__ import annotations

import base64
import functools

import jinja2

from ..manifest import RunPlan
from .summary import RunSummary, format_time

# No script may run in a report, whatever a prompt contains; images only from the page itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; media-src 'self' * file: blob:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ run.title }} — longvid report</title>
<style>
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1c1e22; background: #fafaf8; }
  main { max-width: 1200px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
  h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #d8dbe0; padding-bottom: .2rem; }
  .prompt { font-size: 1.05rem; white-space: pre-wrap; }
  .facts { color: #5d636e; }
  .facts span + span::before { content: " · "; }
  video { width: 100%; max-height: 70vh; background: #000; border-radius: 6px; }
  img.sheet { max-width: 100%; border: 1px solid #d8dbe0; }
  table { border-collapse: collapse; width: 100%; font-size: .92rem; }
  th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #e3e5e9; }
  th { background: #eef0f3; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  .passed { color: #167a3c; }
  .failed, .error { color: #be2026; }
  .regenerated { background: #fff3dc; }
  .badge { display: inline-block; padding: 0 .4rem; border-radius: 4px; background: #d68600; color: #fff; font-size: .8rem; font-weight: 600; }
  .swatch { display: inline-block; width: 1.1rem; height: 1.1rem; border-radius: 3px; vertical-align: middle; border: 1px solid #0002; }
  .warnings li { color: #7a4d00; }
  ol.attempts { margin: 0; padding-left: 1.2rem; }
</style>
</head>
<body>
<main>
<header>
  <h1>{{ run.title }}</h1>
  <p class="prompt">{{ run.prompt }}</p>
  <p class="facts"><span>run {{ run.run_id }}</span><span>{{ run.status }}</span><span>{{ "%g"|format(run.duration_s) }} s</span><span>{{ run.width }}×{{ run.height }} @ {{ run.fps }} fps</span><span>{{ run.segments|length }} segments in {{ storyboard.scenes|length }} scenes</span><span>{{ money(run.cost_usd) }}</span><span>{{ run.regenerated_segments }} regenerated</span><span>planner {{ run.planner }}</span></p>
  {% if run.error %}<p class="error" role="alert">Error: {{ run.error }}</p>{% endif %}
</header>

<section aria-labelledby="video-title">
  <h2 id="video-title">Video</h2>
  {% if video_src %}
  <video controls preload="metadata" src="{{ video_src }}" aria-label="The rendered video"></video>
  {% else %}<p>The final video is not there yet (status: {{ run.status }}).</p>{% endif %}
</section>

{% if run.warnings %}
<section aria-labelledby="warnings-title">
  <h2 id="warnings-title">Warnings</h2>
  <ul class="warnings">{% for warning in run.warnings %}<li>{{ warning }}</li>{% endfor %}</ul>
</section>
{% endif %}

<section aria-labelledby="sheet-title">
  <h2 id="sheet-title">Contact sheet</h2>
  {% if sheet_data_uri %}<img class="sheet" src="{{ sheet_data_uri }}" alt="Contact sheet: the keyframes of every segment with its scene, provider, cost and scores">
  {% else %}<p>No contact sheet.</p>{% endif %}
</section>

<section aria-labelledby="storyboard-title">
  <h2 id="storyboard-title">Storyboard</h2>
  <table>
    <thead><tr><th scope="col">Scene</th><th scope="col">Description</th><th scope="col">Characters</th><th scope="col">Camera</th><th scope="col">Lighting</th><th scope="col">Palette</th><th scope="col">Into next</th><th scope="col" class="num">Weight (s)</th></tr></thead>
    <tbody>
    {% for scene in storyboard.scenes %}
      <tr><td class="num">{{ loop.index }}</td><td>{{ scene.description }}</td>
        <td>{% for c in scene.characters %}{{ c.name }}{% if c.description %} — {{ c.description }}{% endif %}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
        <td>{{ scene.camera_movement.value }}</td><td>{{ scene.lighting.value }}</td>
        <td>{% for colour in scene.color_palette %}<span class="swatch" style="background: {{ colour }}" title="{{ colour }}"></span> {% endfor %}</td>
        <td>{{ scene.transition.value }}</td><td class="num">{{ "%.1f"|format(scene.duration_s) if scene.duration_s else "" }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
</section>

<section aria-labelledby="segments-title">
  <h2 id="segments-title">Segments</h2>
  <table>
    <thead><tr><th scope="col">#</th><th scope="col">Scene</th><th scope="col">Time</th><th scope="col">State</th><th scope="col">Provider</th><th scope="col" class="num">Cost</th><th scope="col" class="num">Made in</th><th scope="col" class="num">Tasks</th><th scope="col">Judge (per attempt)</th></tr></thead>
    <tbody>
    {% for s in run.segments %}
      <tr class="{{ 'regenerated' if s.regenerated else '' }}">
        <td class="num">{{ s.index }}</td>
        <td>{{ s.scene_index + 1 }}: {{ s.scene_text }}{% if s.prompt %}<details><summary>prompt sent</summary>{{ s.prompt }}</details>{% endif %}</td>
        <td>{{ clock(s.start_s) }}–{{ clock(s.start_s + s.duration_s) }}</td>
        <td class="{{ 'failed' if s.state == 'failed' else '' }}">{{ s.state }}{% if s.regenerated %} <span class="badge">regenerated ×{{ s.regenerations }}</span>{% endif %}{% if s.cached %} (cached){% endif %}</td>
        <td>{{ s.provider }}{% if s.model %} / {{ s.model }}{% endif %}</td>
        <td class="num">{{ money(s.cost_usd) }}</td>
        <td class="num">{{ "%.1f s"|format(s.generate_seconds) if s.generate_seconds is not none and not s.cached else "" }}</td>
        <td class="num">{{ s.attempts }}</td>
        <td>{% if s.judged %}<ol class="attempts">{% for a in s.judged %}<li class="{{ 'passed' if a.passed else 'failed' }}">{{ a.describe() }}{% if a.backend %} [{{ a.backend }}]{% endif %}</li>{% endfor %}</ol>{% else %}not judged{% endif %}
          {% if s.candidates %}<table class="candidates"><caption>best of {{ s.candidates|length }}</caption><tr>{% for c in s.candidates %}<td class="{{ 'passed' if c.passed else 'failed' }}">candidate {{ c.k + 1 }}{% if c.kept %} <span class="badge">kept</span>{% endif %}<br>seed {{ c.seed }} · {{ 'passed' if c.passed else 'failed' }} · quality {{ "%.2f"|format(c.quality) }}<br>{% for name, value in c.scores.items() %}{{ name }} {{ "%.2f"|format(value) }} {% endfor %}<br>{{ money(c.cost_usd) }}</td>{% endfor %}</tr></table>{% endif %}
          {% if s.error %}<div class="error">{{ s.error }}</div>{% endif %}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
</section>

<section aria-labelledby="timings-title">
  <h2 id="timings-title">Timings</h2>
  <table>
    <tbody>
      <tr><th scope="row">Started</th><td>{{ run.created_at }}</td></tr>
      <tr><th scope="row">Last update</th><td>{{ run.updated_at }}</td></tr>
      {% if timings.wall_s is not none %}<tr><th scope="row">Wall time of the last invocation</th><td>{{ "%.1f s"|format(timings.wall_s) }}</td></tr>{% endif %}
      <tr><th scope="row">Provider time (kept attempts, summed)</th><td>{{ "%.1f s"|format(timings.provider_s) }}</td></tr>
      <tr><th scope="row">Judge time (all attempts, summed)</th><td>{{ "%.1f s"|format(timings.judge_s) }}</td></tr>
      {% if timings.merge_s is not none %}<tr><th scope="row">Merge</th><td>{{ "%.2f s"|format(timings.merge_s) }}{% if timings.merge_detail %} ({{ timings.merge_detail }}){% endif %}</td></tr>{% endif %}
      {% if timings.judge %}<tr><th scope="row">Judge</th><td>{{ timings.judge }}</td></tr>{% endif %}
    </tbody>
  </table>
</section>
</main>
</body>
</html>
"""


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.globals.update(money=lambda usd: f"${usd:.2f}", clock=format_time)
    return environment.from_string(TEMPLATE)


def timings(summary: RunSummary, report: dict | None) -> dict:
    """Where the time went: from the manifest's segments and, when there, report.json."""
    report = report or {}
    merge = report.get("merge") or {}
    judge = report.get("judge") or {}
    detail = ""
    if merge.get("frames"):
        detail = f"{merge.get('copied_frames', 0)} of {merge['frames']} frames copied, {merge.get('encoded_frames', 0)} re-encoded"
    return {
        "wall_s": report.get("wall_s"),
        "provider_s": sum(s.generate_seconds or 0.0 for s in summary.segments),
        "judge_s": sum(a.seconds for s in summary.segments for a in s.judged),
        "merge_s": merge.get("seconds"),
        "merge_detail": detail,
        "judge": " — ".join(str(v) for v in (judge.get("backend"), judge.get("notes")) if v),
    }


def render_report(summary: RunSummary, plan: RunPlan, sheet_png: bytes | None, video_src: str | None, report: dict | None = None) -> str:
    sheet_uri = f"data:image/png;base64,{base64.b64encode(sheet_png).decode()}" if sheet_png else None
    return _template().render(
        csp=CONTENT_SECURITY_POLICY,
        run=summary,
        storyboard=plan.storyboard,
        video_src=video_src,
        sheet_data_uri=sheet_uri,
        timings=timings(summary, report),
    )
