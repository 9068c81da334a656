// The peerlink library (AAR): the Rust engine for three ABIs, its generated Kotlin bindings,
// the platform-independent io.peerlink session (src/common, also tested on a plain JVM by
// tests/jvm.sh) and io.peerlink.android.PeerlinkTunnel for a VpnService.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

/** The Rust workspace: this file's grandparent. */
val repoRoot: File = rootDir.parentFile
/** cargo-ndk's ABI names; each maps to a Rust target it builds. */
val abis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
/** Android's minimum for the engine: `getifaddrs` (ICE) exists from API 24. */
val minApi = 24
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")
val uniffiKotlin = layout.buildDirectory.dir("generated/uniffi/kotlin")

android {
    namespace = "io.peerlink"
    compileSdk = 35
    // r28+ links with 16 KB page alignment by default (required from Android 15 on 16 KB devices).
    ndkVersion = "28.0.13004108"

    defaultConfig {
        minSdk = minApi
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets.getByName("main") {
        // Kotlin files in java source dirs are compiled by the Kotlin plugin.
        java.srcDirs("src/main/kotlin", "src/common/kotlin", uniffiKotlin)
        jniLibs.srcDir(rustJniLibs)
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // DESIGN §12: JNA >= 5.17 as an AAR (its natives for every ABI, 16 KB aligned).
    implementation("net.java.dev.jna:jna:5.18.1@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}

/** libpeerlink_ffi.so for each ABI, release profile, into build/rustJniLibs/<abi>/. */
val cargoNdk by tasks.registering(Exec::class) {
    group = "rust"
    workingDir = repoRoot
    val args = mutableListOf("cargo", "ndk", "--platform", "$minApi")
    abis.forEach { args += listOf("-t", it) }
    args += listOf("-o", rustJniLibs.get().asFile.path, "build", "--release", "-p", "peerlink-ffi")
    commandLine(args)
    // Older NDKs (< r28) link with 4 KB pages; say it explicitly so that any NDK gives 16 KB.
    environment("RUSTFLAGS", "-C link-arg=-Wl,-z,max-page-size=16384")
    inputs.dir(repoRoot.resolve("core/src"))
    inputs.dir(repoRoot.resolve("bindings/src"))
    outputs.dir(rustJniLibs)
}

/** The Kotlin bindings, generated from a host build of the same sources (library mode). */
val generateBindings by tasks.registering(Exec::class) {
    group = "rust"
    workingDir = repoRoot
    commandLine("bindings/generate.sh", "--kotlin", uniffiKotlin.get().asFile.path)
    inputs.dir(repoRoot.resolve("bindings/src"))
    inputs.file(repoRoot.resolve("bindings/uniffi.toml"))
    outputs.dir(uniffiKotlin)
}

tasks.named("preBuild") {
    dependsOn(cargoNdk, generateBindings)
}
