/* The data-pipeline stages, one file each (pipeline/stage_<name>.c), run as
 * `sdw pipeline <stage> [options]`. Each entry point parses its own options
 * (--help describes them), writes its manifest (pipeline/manifest.h) into the
 * data directory, and returns the process exit status: 0 done, 1 failed
 * (one line "sdw: ..." on stderr), 2 usage error, 130 interrupted. A stage
 * killed at any moment and started again finishes with no duplicate and no
 * missing item. */
#ifndef SDW_PIPELINE_STAGES_H
#define SDW_PIPELINE_STAGES_H

typedef struct sdw_pipeline_stage {
  const char *name;
  const char *summary;
  int (*main)(int argc, char **argv); /* argv[0] is the stage name */
} sdw_pipeline_stage;

/* The stage table in pipeline order (pipeline/stages.c), NULL-terminated. */
extern const sdw_pipeline_stage sdw_pipeline_stages[];

/* `sdw pipeline status DIR`: every stage's manifest as a table. */
int sdw_pipeline_status_main(int argc, char **argv);
/* `sdw pipeline metadata` (pipeline/stage_metadata.c). */
int sdw_pipeline_metadata_main(int argc, char **argv);
/* `sdw pipeline filter` (pipeline/stage_filter.c). */
int sdw_pipeline_filter_main(int argc, char **argv);
/* `sdw pipeline download` (pipeline/stage_download.c). */
int sdw_pipeline_download_main(int argc, char **argv);
/* `sdw pipeline preprocess` (pipeline/stage_preprocess.c). */
int sdw_pipeline_preprocess_main(int argc, char **argv);
/* `sdw pipeline build` (pipeline/stage_build.c). */
int sdw_pipeline_build_main(int argc, char **argv);
/* `sdw pipeline encode` (pipeline/stage_encode.c). */
int sdw_pipeline_encode_main(int argc, char **argv);
/* `sdw pipeline filter-captions` (pipeline/stage_filter_captions.c). */
int sdw_pipeline_filter_captions_main(int argc, char **argv);
/* `sdw pipeline diffusiondb` (pipeline/stage_diffusiondb.c). */
int sdw_pipeline_diffusiondb_main(int argc, char **argv);
/* `sdw pipeline train-vae` (pipeline/stage_train_vae.c). */
int sdw_pipeline_train_vae_main(int argc, char **argv);
/* `sdw pipeline emoji` (pipeline/stage_emoji.c). */
int sdw_pipeline_emoji_main(int argc, char **argv);

#endif
