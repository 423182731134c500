# Patchbay container image: the gateway on the embedded model, settings by environment variables.
#   docker build -t patchbay:0.1.0 .                              # CPU (onnxruntime-node's bundled binaries)
#   docker build -t patchbay:0.1.0-cuda --build-arg VARIANT=cuda . # + onnxruntime-node's CUDA 12 provider
# Not built on the project's CI machines (no container engine there); see README "Container image".
ARG VARIANT=cpu
ARG NODE_IMAGE=node:20.20.2-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# 1. Compile TypeScript to JavaScript.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig*.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only; the CUDA variant also fetches onnxruntime-node's CUDA binaries.
FROM ${NODE_IMAGE} AS deps
ARG VARIANT
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && if [ "$VARIANT" = "cuda" ]; then npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12; fi

# 3. Runtime bases: plain Node for CPU; the CUDA runtime image plus the same Node binary for GPUs.
FROM ${NODE_IMAGE} AS runtime-cpu
FROM ${CUDA_IMAGE} AS runtime-cuda
COPY --from=build /usr/local/bin/node /usr/local/bin/node

FROM runtime-${VARIANT}
WORKDIR /app
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    PATCHBAY_MODEL_DIR=/app/models/tiny-gpt2 \
    PATCHBAY_ADAPTER_DIR=/app/adapters \
    PATCHBAY_DATA_DIR=/var/lib/patchbay/data
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models/tiny-gpt2 ./models/tiny-gpt2
COPY adapters ./adapters
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it; data lives outside the read-only app tree.
RUN mkdir -p /var/lib/patchbay/data && chown -R 10001:10001 /var/lib/patchbay
USER 10001:10001
EXPOSE 8080
CMD ["node", "dist/src/main.js"]
