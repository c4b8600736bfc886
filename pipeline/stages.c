/* The stage table. Stages are added here as they are written. */
#include "pipeline/stages.h"

#include <stddef.h>

const sdw_pipeline_stage sdw_pipeline_stages[] = {
    {"status", "print every stage's state, counts, throughput and failures for a data directory",
     sdw_pipeline_status_main},
    {"metadata", "download a Hugging Face dataset repo's parquet files (LAION metadata)",
     sdw_pipeline_metadata_main},
    {"filter", "filter LAION metadata parquet files with the seed's rules into one parquet file",
     sdw_pipeline_filter_main},
    {"download", "download URL lists into WebDataset shards in img2dataset's layout",
     sdw_pipeline_download_main},
    {"preprocess",
     "validate and tokenize shard samples into the token cache (one parquet per shard)",
     sdw_pipeline_preprocess_main},
    {"build", "merge the token cache, seeded shuffle, train/val split and dataset_config.json",
     sdw_pipeline_build_main},
    {"encode", "VAE-encode the train/val images into the latent store the trainer reads",
     sdw_pipeline_encode_main},
    {"train-vae", "train a small KL autoencoder on a pixel-space store (the demo's VAE)",
     sdw_pipeline_train_vae_main},
    {"filter-captions", "keep the samples whose captions match keywords (the seed's 06 step)",
     sdw_pipeline_filter_captions_main},
    {"diffusiondb", "DiffusionDB part zips to shards (512 center crop, JPEG q95)",
     sdw_pipeline_diffusiondb_main},
    {"emoji", "Noto Color Emoji + Unicode names as LAION-style metadata (the demo's data)",
     sdw_pipeline_emoji_main},
    {NULL, NULL, NULL},
};
