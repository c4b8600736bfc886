/* The preview panel: a caption (which file, how old, how it is drawn) and
 * room for the image, which the app draws after the frame (sixel or half
 * blocks, see preview.h): this panel leaves those cells blank. */
#include <stdio.h>
#include <string.h>

#include "tui/theme.h"
#include "tui/view.h"

sdw_tui_rect sdw_panel_preview_image_rect(sdw_tui_rect panel) {
  sdw_tui_rect in = panel.w >= 4 && panel.h >= 3 ? sdw_tui_rect_inner(panel) : panel;
  if (in.h < 3 || in.w < 2) return (sdw_tui_rect){in.x, in.y, 0, 0};
  int caption = in.h >= 8 ? 2 : 1; /* the file, then its prompt when there is room */
  return (sdw_tui_rect){in.x, in.y + caption, in.w, in.h - caption};
}

void sdw_panel_preview_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                            const sdw_run_model *m, bool focused) {
  (void)m;
  sdw_tui_rect in = sdw_panel_frame(g, r, "4 Preview", focused);
  if (in.w <= 0 || in.h <= 0) return;
  if (!v->preview_path[0] || !v->preview) {
    sdw_tui_grid_text(g, in, in.x + 1, in.y, in.w - 2, SDW_ROLE_DIM,
                      "no image yet (s: sample a prompt; validation grids appear here)");
    return;
  }
  const char *name = strrchr(v->preview_path, '/');
  name = name ? name + 1 : v->preview_path;
  sdw_tui_grid_printf(g, in, in.x + 1, in.y, in.w - 2, SDW_ROLE_TITLE, "%s", name);
  int used = sdw_tui_text_width(name) + 1;
  sdw_tui_grid_printf(g, in, in.x + 1 + used, in.y, in.w - 2 - used, SDW_ROLE_DIM, " %dx%d, %s",
                      v->preview->width, v->preview->height,
                      sdw_preview_mode_name(v->preview_mode));
  if (in.h >= 8 && v->preview_prompt[0])
    sdw_tui_grid_printf(g, in, in.x + 1, in.y + 1, in.w - 2, SDW_ROLE_NORMAL, "\"%s\"",
                        v->preview_prompt);
  if (v->preview_mode == SDW_PREVIEW_TEXT && in.h > 2)
    sdw_tui_grid_text(g, in, in.x + 1, in.y + 3, in.w - 2, SDW_ROLE_DIM,
                      "(no colour here: open the PNG to see it)");
}
