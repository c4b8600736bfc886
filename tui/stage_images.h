/* Sample images of a pipeline stage, for the pipeline panel's report: the
 * images among a stage's outputs, found from its manifest's "outputs" list
 * (WebDataset shards are read with pipeline/tar.h, image folders listed,
 * image files taken as they are; with none listed, the folder DATA/<stage>)
 * and decoded with pipeline/image.h. No curses. */
#ifndef SDW_TUI_STAGE_IMAGES_H
#define SDW_TUI_STAGE_IMAGES_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/base/status.h"
#include "pipeline/image.h"

/* Decodes the index-th image (0-based, in output order; shard members in
 * archive order, folder entries by name; at most the first 64 outputs and
 * 1000 images are looked at) of a stage whose manifest is given; relative
 * output paths are taken relative to data_dir. *out is owned by the caller
 * (sdw_image_free); label receives "shards/00000.tar:000000001.jpg" style
 * text. SDW_ERR_NOT_FOUND when there are not that many images. */
sdw_status sdw_tui_stage_image(const char *data_dir, const cJSON *manifest, int index,
                               sdw_image *out, char *label, size_t label_cap);

#endif
