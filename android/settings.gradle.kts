// The peerlink Android SDK: the library module and a sample VpnService app.
// Needs the Android SDK + NDK (r28+: 16 KB page alignment by default), a Rust toolchain with the
// Android targets (rustup target add aarch64-linux-android armv7-linux-androideabi
// x86_64-linux-android) and cargo-ndk (cargo install cargo-ndk).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "peerlink-android"
include(":peerlink", ":sample")
