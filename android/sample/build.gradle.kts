// A minimal app around SampleVpnService: the whole use of the SDK in two small files.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "io.peerlink.sample"
    compileSdk = 35

    defaultConfig {
        applicationId = "io.peerlink.sample"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    sourceSets.getByName("main") {
        java.srcDirs("src/main/kotlin")
    }

    buildTypes {
        release {
            // Shrinking on, to prove the SDK's consumer rules keep JNA and the bindings.
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"))
        }
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
    implementation(project(":peerlink"))
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}
