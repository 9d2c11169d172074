// hsjax avatar viewer: the canonical avatar (avatar.ply) skinned on the GPU by Spark's
// SplatSkinning (linear blend, covariance splats) with the per-frame joint transforms of a
// motion (motions/<name>.bin, float32 [T, 24, 3, 4]). Written by hsjax.report.viewer; the
// maths and its differences from hsjax's own deformation are documented there.
//
// Camera: scene.json holds the input camera already converted from OpenCV to three.js
// (matrixWorld and projection, row-major); the canvas keeps that camera's aspect ratio.
//
// Scripting (used by hsjax's browser tests): window.hsjaxViewer exposes ready / error,
// setMotion(name), setFrame(t), play(), pause(), setCamera({matrix_world, projection,
// width, height}), setBackground([r, g, b]) and settle() (resolves once Spark has re-skinned
// and re-sorted for the current frame and camera, and the canvas is drawn).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import {
  SparkRenderer, SplatMesh, SplatSkinning, SplatSkinningMode,
} from "@sparkjsdev/spark";

const NUM_JOINTS = 24;
// Rasterisation settings of hsjax's renderer (kernels/rasterize): 0.3 px low-pass on the 2D
// covariance, contributions below 1/255 skipped, i.e. Gaussians cut at sqrt(2 ln 255) sigma.
const SPLAT_SETTINGS = {
  preBlurAmount: 0.3,
  blurAmount: 0.0,
  minAlpha: 1.0 / 255.0,
  maxStdDev: Math.sqrt(2.0 * Math.log(255.0)),
};

const api = { ready: false, error: null };
window.hsjaxViewer = api;

function fail(message) {
  api.error = String(message);
  const box = document.getElementById("error");
  box.textContent = "viewer error: " + api.error;
  box.style.display = "block";
  document.getElementById("status").textContent = "error";
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}`);
  }
  return response;
}

function rowMajor(values) {
  const m = new THREE.Matrix4();
  m.set(...values);
  return m;
}

async function main() {
  const scene = await (await fetchOk("scene.json")).json();
  const params = new URLSearchParams(window.location.search);
  const canvas = document.getElementById("canvas");
  const renderer = new THREE.WebGLRenderer({
    canvas, antialias: false, preserveDrawingBuffer: true,
  });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  const world = new THREE.Scene();
  const setBackground = (rgb) => {
    // The page shows colours as written (sRGB), like hsjax's PNGs.
    world.background = new THREE.Color().setRGB(rgb[0], rgb[1], rgb[2], THREE.SRGBColorSpace);
  };
  setBackground(scene.background);
  // Covariance splats (needed by linear-blend skinning) render only through extended
  // (float32 centre) accumulators.
  const spark = new SparkRenderer({
    renderer, covSplats: true, accumExtSplats: true, ...SPLAT_SETTINGS,
  });
  world.add(spark);

  // The camera: the input view, converted to three.js by hsjax (camera_to_threejs).
  const camera = new THREE.PerspectiveCamera();
  let aspect = scene.camera.width / scene.camera.height;
  let fixedSize = null;  // [w, h] CSS pixels when scripted, else fit to the window.
  const controls = new OrbitControls(camera, canvas);
  const applyCamera = (cam) => {
    camera.projectionMatrix.copy(rowMajor(cam.projection));
    camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
    rowMajor(cam.matrix_world).decompose(camera.position, camera.quaternion, camera.scale);
    camera.updateMatrixWorld(true);
    // Orbit about the point of the viewing axis at the depth of the body, so that the
    // controls' lookAt keeps this exact view.
    const forward = new THREE.Vector3(0, 0, -1).applyQuaternion(camera.quaternion);
    const toTarget = new THREE.Vector3(...scene.target).sub(camera.position);
    controls.target.copy(camera.position).addScaledVector(forward, toTarget.dot(forward));
  };
  const resize = () => {
    let w, h;
    if (fixedSize) {
      [w, h] = fixedSize;
    } else {
      const box = document.getElementById("views").getBoundingClientRect();
      const image = document.getElementById("frame-image");
      const room = image.style.display === "none" ? box.width - 16 : (box.width - 24) / 2;
      w = Math.max(64, Math.min(room, (box.height - 16) * aspect));
      h = w / aspect;
    }
    renderer.setSize(Math.round(w), Math.round(h), true);
  };
  window.addEventListener("resize", resize);

  // The avatar, and its skinning: 4 joints and 8-bit weights per Gaussian (skinning.bin).
  const mesh = new SplatMesh({ url: scene.avatar, extSplats: true, covSplats: true });
  await mesh.initialized;
  if (mesh.numSplats !== scene.num_gaussians) {
    throw new Error(`${scene.avatar}: ${mesh.numSplats} splats loaded, scene.json says ` +
                    `${scene.num_gaussians}`);
  }
  const skin = new Uint8Array(await (await fetchOk(scene.skinning.file)).arrayBuffer());
  const k = scene.skinning.max_bones;
  if (skin.length !== scene.num_gaussians * 2 * k) {
    throw new Error(`${scene.skinning.file}: ${skin.length} bytes, expected ` +
                    `${scene.num_gaussians * 2 * k}`);
  }
  const skinning = new SplatSkinning({
    mesh, numSplats: scene.num_gaussians, numBones: NUM_JOINTS,
    mode: SplatSkinningMode.LINEAR_BLEND,
  });
  const joints = new THREE.Vector4();
  const weights = new THREE.Vector4();
  for (let i = 0; i < scene.num_gaussians; i++) {
    const row = skin.subarray(i * 2 * k, (i + 1) * 2 * k);
    joints.set(row[0], row[1], row[2], row[3]);
    weights.set(row[4] / 255, row[5] / 255, row[6] / 255, row[7] / 255);
    skinning.setSplatBones(i, joints, weights);
  }
  skinning.skinTexture.needsUpdate = true;
  mesh.skinning = skinning;
  mesh.updateGenerator();
  world.add(mesh);

  // Motions: float32 [T, 24, 3, 4] each, loaded on first use.
  const motions = new Map();
  const loadMotion = async (name) => {
    if (!motions.has(name)) {
      const entry = scene.motions.find((m) => m.name === name);
      if (!entry) {
        throw new Error(`no motion '${name}' (have: ${scene.motions.map((m) => m.name)})`);
      }
      const data = new Float32Array(await (await fetchOk(entry.file)).arrayBuffer());
      if (data.length !== entry.num_frames * NUM_JOINTS * 12) {
        throw new Error(`${entry.file}: ${data.length} floats, expected ` +
                        `${entry.num_frames * NUM_JOINTS * 12}`);
      }
      motions.set(name, { ...entry, data });
    }
    return motions.get(name);
  };

  const ui = {
    play: document.getElementById("play"),
    slider: document.getElementById("slider"),
    status: document.getElementById("status"),
    speed: document.getElementById("speed"),
    motion: document.getElementById("motion"),
    image: document.getElementById("frame-image"),
    showFrames: document.getElementById("show-frames"),
  };
  for (const m of scene.motions) {
    ui.motion.add(new Option(`${m.name} (${m.num_frames})`, m.name));
  }
  const frameFiles = scene.frames ? scene.frames.files : [];
  if (frameFiles.length) {
    document.getElementById("frames-toggle").style.display = "";
  }

  const state = { motion: null, frame: 0, time: 0, playing: true, speed: 1 };
  const bone = new THREE.Matrix4();
  const showFrame = (t) => {
    const m = state.motion;
    state.frame = Math.max(0, Math.min(m.num_frames - 1, Math.floor(t)));
    const base = state.frame * NUM_JOINTS * 12;
    for (let j = 0; j < NUM_JOINTS; j++) {
      const a = m.data.subarray(base + j * 12, base + j * 12 + 12);
      bone.set(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
               0, 0, 0, 1);
      skinning.setBoneMatrix(j, bone);
    }
    skinning.updateBones();
    ui.slider.value = String(state.frame);
    ui.status.textContent = `frame ${state.frame + 1} / ${m.num_frames}`;
    const withImage = frameFiles.length && scene.frames.motion === m.name &&
                      ui.showFrames.checked;
    const display = withImage ? "block" : "none";
    if (ui.image.style.display !== display) {
      ui.image.style.display = display;
      resize();
    }
    if (withImage) {
      ui.image.src = frameFiles[state.frame];
      ui.image.style.height = canvas.style.height;
    }
  };
  const setMotion = async (name) => {
    state.motion = await loadMotion(name);
    ui.motion.value = name;
    ui.slider.max = String(state.motion.num_frames - 1);
    state.time = Math.min(state.time, state.motion.num_frames - 1);
    showFrame(state.time);
  };
  const setPlaying = (playing) => {
    state.playing = playing;
    ui.play.textContent = playing ? "pause" : "play";
  };

  ui.play.addEventListener("click", () => setPlaying(!state.playing));
  window.addEventListener("keydown", (e) => {
    if (e.code === "Space" && e.target === document.body) {
      e.preventDefault();
      setPlaying(!state.playing);
    }
  });
  ui.slider.addEventListener("input", () => {
    setPlaying(false);
    state.time = Number(ui.slider.value);
    showFrame(state.time);
  });
  ui.speed.addEventListener("change", () => { state.speed = Number(ui.speed.value); });
  ui.motion.addEventListener("change", () => setMotion(ui.motion.value).catch(fail));
  ui.showFrames.addEventListener("change", () => showFrame(state.frame));
  document.getElementById("reset").addEventListener("click", () => applyCamera(scene.camera));

  applyCamera(scene.camera);
  resize();
  await setMotion(params.get("motion") || scene.default_motion);
  if (params.has("frame")) {
    state.time = Number(params.get("frame"));
    showFrame(state.time);
  }
  setPlaying(params.get("autoplay") !== "0");

  let last = performance.now();
  const loop = (now) => {
    const dt = Math.min(0.25, (now - last) / 1000);
    last = now;
    if (state.playing && state.motion) {
      state.time = (state.time + dt * state.motion.fps * state.speed) % state.motion.num_frames;
      if (Math.floor(state.time) !== state.frame) {
        showFrame(state.time);
      }
    }
    renderer.render(world, camera);
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);

  Object.assign(api, {
    numFrames: () => state.motion.num_frames,
    motions: () => scene.motions.map((m) => m.name),
    setMotion,
    setFrame: (t) => { setPlaying(false); state.time = t; showFrame(t); },
    play: () => setPlaying(true),
    pause: () => setPlaying(false),
    setCamera: (cam) => {
      if (cam.width && cam.height) {
        aspect = cam.width / cam.height;
        fixedSize = [cam.width, cam.height];
        resize();
      }
      applyCamera(cam);
    },
    setBackground,
    settle: async () => {
      // Spark re-skins on the next draw and sorts in a worker; wait for the drawing loop to
      // have drawn a few frames with no sort pending.
      let quiet = 0;
      for (let i = 0; i < 600 && quiet < 3; i++) {
        await new Promise((resolve) => requestAnimationFrame(resolve));
        quiet = (i >= 2 && !spark.sorting && !spark.sortDirty) ? quiet + 1 : 0;
      }
    },
  });
  api.ready = true;
}

main().catch((e) => { console.error(e); fail(e && e.stack ? e.stack : e); });
