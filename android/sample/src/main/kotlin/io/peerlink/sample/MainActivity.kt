package io.peerlink.sample

import android.app.Activity
import android.content.Intent
import android.net.VpnService
import android.os.Build
import android.os.Bundle

/** Asks for the VPN permission once, then starts the service. */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        // null: already the prepared VPN; otherwise the system's consent dialog.
        val consent = VpnService.prepare(this)
        if (consent == null) {
            startVpn()
        } else {
            @Suppress("DEPRECATION")
            startActivityForResult(consent, REQUEST_VPN)
        }
    }

    @Deprecated("Activity result API needs androidx; the sample stays framework-only")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        @Suppress("DEPRECATION")
        super.onActivityResult(requestCode, resultCode, data)
        if (requestCode == REQUEST_VPN && resultCode == RESULT_OK) startVpn()
        finish()
    }

    private fun startVpn() {
        val intent = Intent(this, SampleVpnService::class.java)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) startForegroundService(intent) else startService(intent)
    }

    private companion object {
        const val REQUEST_VPN = 1
    }
}
