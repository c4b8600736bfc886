/* Training of a VAE (core/model/vae.h: diffusers' AutoencoderKL) from
 * scratch: one forward with every activation the backward needs kept in an
 * arena, the loss, and the backward into a gradient set. This is what
 * `sdw pipeline train-vae` runs for the demo's tiny autoencoder; the frozen
 * sd-vae-ft-mse never goes through it.
 *
 * The loss is the KL autoencoder's of latent diffusion (CompVis
 * taming/ldm LPIPSWithDiscriminator) without its perceptual and GAN terms,
 * with a squared reconstruction error:
 *
 *   moments      = quant_conv(encoder(x))          x[N, in, H, W] in [-1, 1]
 *   mean, logvar = moments split in channel halves; logvar clamped [-30, 20]
 *   z            = mean + exp(logvar / 2) * noise  noise[N, L, H/f, W/f] ~ N(0, 1)
 *   recon        = decoder(post_quant_conv(z))
 *   rec          = sum((recon - x)^2) / N          per-image sum, batch mean
 *   kl           = sum(mean^2 + exp(logvar) - 1 - logvar) / (2 N)
 *   loss         = rec + kl_weight * kl
 *
 * (kl is diffusers' DiagonalGaussianDistribution.kl() averaged over the
 * batch; LDM's kl_weight is 1e-6 on this scale.) Checked against PyTorch
 * autograd in float64 (tests/test_vae_train.c).
 *
 * The posterior's few elementwise steps (clamp, exp, sampling, the KL and
 * their derivatives) run on the host over the small latent tensors, moved
 * through ctx->ops->download / upload; everything else runs through
 * ctx->ops, so another backend runs it unchanged. */
#ifndef SDW_MODEL_VAE_TRAIN_H
#define SDW_MODEL_VAE_TRAIN_H

#include "core/base/arena.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/model/vae.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_vae_train_loss {
  double loss; /* rec + kl_weight * kl */
  double rec;  /* squared error per image */
  double kl;   /* KL divergence per image */
} sdw_vae_train_loss;

/* A gradient set for m: an sdw_vae of the same config and parts whose
 * (zeroed) parameters hold the gradients at the parameters' own offsets.
 * Free with sdw_vae_free. m must hold both halves. */
sdw_status sdw_vae_grads_create(sdw_vae *grads, const sdw_vae *m);
/* grads[:] = 0. */
sdw_status sdw_vae_grads_zero(sdw_vae *grads);

/* One forward and backward of the loss above: image[N, in_channels, H, W]
 * (H, W multiples of the downscale) and noise[N, latent_channels, H/f,
 * W/f], backend tensors. Gradients of the loss are ACCUMULATED into grads
 * (sdw_vae_grads_create; zero them to start a step), so micro-batches sum.
 * recon (may be NULL) receives the reconstruction [N, out_channels, H, W]
 * (a backend tensor of that shape). The arena is back at its entry mark on
 * return. kl_weight >= 0. */
sdw_status sdw_vae_train_step(sdw_vae *m, sdw_vae *grads, sdw_arena *arena, const sdw_tensor *image,
                              const sdw_tensor *noise, double kl_weight, sdw_vae_train_loss *loss,
                              sdw_tensor *recon);

/* Arena bytes one sdw_vae_train_step of that batch takes (the saved
 * activations and the backward's temporaries). */
size_t sdw_vae_train_arena_bytes(const sdw_vae *m, int64_t n, int64_t height, int64_t width);

/* Writes m as a diffusers vae folder: dir/diffusion_pytorch_model.safetensors
 * (every parameter, F32, diffusers' names; note in the metadata) and then
 * dir/config.json (AutoencoderKL with m->cfg, scaling_factor included),
 * each atomically. dir must exist. CPU-backend parameters. */
sdw_status sdw_vae_save(const sdw_vae *m, const char *dir, const char *note);

#ifdef __cplusplus
}
#endif
#endif
