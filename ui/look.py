"""The page's own CSS and script: the result column stays in view while the inputs scroll (so the run button, the
progress bar and the result are seen together on a 1440×900 screen), and Ctrl+Enter (⌘+Enter) runs the open tab's
job."""
from __future__ import annotations

# the run buttons, first among the open tab's visible primary buttons, in this order
RUN_BUTTONS = ["stylize", "text-run", "ref-run", "texture-run", "audio-render", "mesh-run"]

CSS = """
.result-column { position: sticky; top: 6px; align-self: flex-start; }
/* Gradio's container hides overflow, which makes it the scroll box a sticky column sticks to; clip does not */
.gradio-container { overflow: visible !important; overflow-x: clip !important; }
/* results fill their frame: Gradio's own scale-down showed a small result (64 px) as a stamp */
.result-column .image-frame { width: 100%; }
.result-column .image-frame img { object-fit: contain !important; }
#style-pictures .caption-label { font-size: 0.8em; }
/* the progress bar shows on the result's text, under the live preview (not over it): room for it */
#result-info, #texture-info, #text-info, #ref-info { min-height: 72px; }
"""

HEAD = """
<script>
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.repeat) return;
  const shown = (b) => b && b.offsetParent !== null && !b.disabled;
  const known = %s.map((id) => document.getElementById(id)).filter(shown);
  const primary = [...document.querySelectorAll("button.primary")].filter(shown);
  const button = known[0] || primary[0];
  if (button) { event.preventDefault(); button.click(); }
});
</script>
""" % (RUN_BUTTONS,)
